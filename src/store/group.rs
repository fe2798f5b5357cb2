//! Group commit of audit events. Events handed to [`Store::defer_event`] wait
//! in memory and are appended to the chain by the next write transaction
//! that appends events — an explicit [`Store::flush_events`], a
//! state change with its own event (a work-item transition, a run's end),
//! an [`Store::append_event`] — always BEFORE that transaction's own events,
//! so the chain keeps the order in which events happened and a state change
//! still commits in one transaction with its event. One fsync then covers a
//! whole batch.
//!
//! What makes this safe is the caller's durability rule (docs/audit.md): the
//! engine defers the events of a step and flushes before every action with
//! an outside effect starts and when the run ends. Pending events are also
//! flushed by a background task at the latest [`FLUSH_AFTER`] after they
//! were deferred, and at once (by that task, off the action's path) when
//! [`MAX_PENDING`] wait; a recorder that gets [`BLOCK_PENDING`] ahead of the
//! database waits for a flush itself; run-state events (`run.*`) are
//! never deferred. A crash loses at most what is pending — events of the
//! action in flight and of actions without outside effects since the last
//! flush — and the chain stays intact: nothing half-written is ever visible.
//!
//! Bookkeeping: the write transaction that drains the queue records the id
//! and hash it gave the last drained event; after the transaction (committed
//! or not) [`Store::write`] looks that row up, and puts the events back at
//! the head of the queue if it is not there (a rolled-back transaction, a
//! lost compare-and-set), so no event is lost or written twice.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::time::now_micros;
use super::{NewEvent, Store, StoreError};

/// Pending events that wake the background flusher at once.
pub const MAX_PENDING: usize = 1024;

/// Pending events at which the recorder itself waits for a flush
/// (backpressure: memory stays bounded if the database is slow).
pub const BLOCK_PENDING: usize = 8 * MAX_PENDING;

/// How long an event may wait for its batch before the background task
/// commits it anyway (so a long `wait` step does not keep its predecessors
/// out of the dashboard).
pub const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// The queue of deferred events and what the current write took from it.
#[derive(Default)]
pub(super) struct Pending {
    queue: VecDeque<(DateTime<Utc>, NewEvent)>,
    /// Events moved into the write transaction in progress.
    taken: Vec<(DateTime<Utc>, NewEvent)>,
    /// The id and hash the last of `taken` got in that transaction.
    taken_last: Option<(i64, String)>,
    /// The write transaction that took them committed (see
    /// [`Store::commit_write`]): no need to look the last one up.
    taken_committed: bool,
    /// Set while [`Store::write`] holds the write lock: only then may an
    /// append drain the queue.
    in_write: bool,
    flusher_started: bool,
}

impl Store {
    /// Accepts `event` for group commit: it is appended to the chain (with
    /// `at` = now) by the next write transaction that appends events, at the
    /// latest [`FLUSH_AFTER`] from now. Does NOT redact (the recorder does).
    /// A `run.*` event is appended at once.
    pub async fn defer_event(&self, event: NewEvent) -> Result<(), StoreError> {
        if super::event::is_run_state_kind(&event.kind) {
            return self.append_event(event).await.map(|_| ());
        }
        let (len, start_flusher) = {
            let mut p = self.pending();
            p.queue.push_back((now_micros(), event));
            let start = !p.flusher_started;
            p.flusher_started = true;
            (p.queue.len(), start)
        };
        if start_flusher {
            self.start_flusher();
        }
        if len >= BLOCK_PENDING {
            self.flush_events().await?;
        } else if len >= MAX_PENDING {
            self.inner.flush_now.notify_one();
        }
        Ok(())
    }

    /// Commits every pending event now (one transaction, one fsync). The
    /// durability point of the engine's rule: after it returns `Ok`, every
    /// event deferred before the call is in the chain on disk.
    pub async fn flush_events(&self) -> Result<(), StoreError> {
        if self.pending_events() == 0 {
            return Ok(());
        }
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            self.drain_pending_in_tx(&mut tx).await?;
            self.commit_write(tx)
                .await
                .map_err(|e| self.err(e, "commit deferred audit events"))
        })
        .await
    }

    /// Changes how long an event may wait for its batch (default
    /// [`FLUSH_AFTER`]); tests that look at pending events set it long.
    pub fn set_flush_after(&self, after: Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX).max(1);
        self.inner
            .flush_after_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many events wait for their batch.
    pub fn pending_events(&self) -> usize {
        let p = self.pending();
        p.queue.len() + p.taken.len()
    }

    /// Drops the pending events of run `run_id` that could not be written
    /// (the store's disk is full) and says how many: the caller records that
    /// number in the run's end, which then fits in the released reserve.
    /// Events of other runs stay queued.
    pub fn discard_pending_of_run(&self, run_id: &str) -> usize {
        let mut p = self.pending();
        let before = p.queue.len();
        p.queue.retain(|(_, e)| e.run_id.as_deref() != Some(run_id));
        before - p.queue.len()
    }

    pub(super) fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A panic while holding this lock cannot leave the queue half
        // changed (only push/drain/extend under it): keep using it.
        self.inner
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the pending events into this transaction's appends (only inside
    /// [`Store::write`]); returns them for the caller to put first.
    pub(super) fn take_pending(&self) -> Vec<(DateTime<Utc>, NewEvent)> {
        let mut p = self.pending();
        if !p.in_write || p.queue.is_empty() {
            return Vec::new();
        }
        let drained: Vec<_> = p.queue.drain(..).collect();
        // Kept until the write is known to have committed them.
        p.taken.extend(drained.iter().cloned());
        drained
    }

    /// Remembers the id and hash the last taken event got.
    pub(super) fn note_taken(&self, last: (i64, String)) {
        self.pending().taken_last = Some(last);
    }

    /// Appends every pending event inside the caller's write transaction.
    pub(crate) async fn drain_pending_in_tx(
        &self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<(), StoreError> {
        self.append_rows_in_tx(conn, Vec::new(), &Default::default())
            .await
            .map(|_| ())
    }

    /// Commits a write transaction; the deferred events it drained are then
    /// known to be in the chain, and [`Store::end_attempt`] need not look
    /// them up (one query less per write on the engine's path).
    pub(crate) async fn commit_write(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        let mut p = self.pending();
        if p.in_write {
            p.taken_committed = true;
        }
        Ok(())
    }

    /// Called by [`Store::write`] under the write lock before an attempt.
    pub(super) fn begin_attempt(&self) {
        self.pending().in_write = true;
    }

    /// Called by [`Store::write`] under the write lock after an attempt:
    /// keeps the drained events if their last one is in the table as it was
    /// written, else puts them back at the head of the queue.
    pub(super) async fn end_attempt(&self, attempt_ok: bool) {
        let (taken, last, known) = {
            let mut p = self.pending();
            p.in_write = false;
            let known = std::mem::take(&mut p.taken_committed);
            (std::mem::take(&mut p.taken), p.taken_last.take(), known)
        };
        if taken.is_empty() || known {
            return;
        }
        let committed = match last {
            // Taken but never inserted: the attempt failed before.
            None => false,
            Some((id, hash)) => {
                let q = self.sql("SELECT hash FROM audit_events WHERE id = $1");
                let found = sqlx::query(&q)
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await
                    .and_then(|r| r.map(|r| r.try_get::<String, _>("hash")).transpose());
                match found {
                    Ok(h) => h.as_deref() == Some(hash.as_str()),
                    // Cannot tell: trust the attempt's own result.
                    Err(e) => {
                        tracing::warn!(
                            "cannot check that deferred audit events were committed: {e}"
                        );
                        attempt_ok
                    }
                }
            }
        };
        if !committed {
            let mut p = self.pending();
            for ev in taken.into_iter().rev() {
                p.queue.push_front(ev);
            }
        }
    }

    /// The background task that commits events older than [`FLUSH_AFTER`];
    /// it ends when the last handle on this store is dropped.
    fn start_flusher(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(async move {
            while let Some((notify, after)) = weak.upgrade().map(|i| {
                let ms = i.flush_after_ms.load(std::sync::atomic::Ordering::Relaxed);
                (i.flush_now.clone(), Duration::from_millis(ms))
            }) {
                tokio::select! {
                    _ = tokio::time::sleep(after) => {}
                    _ = notify.notified() => {}
                }
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                let store = Store { inner };
                let due = !store.pending().queue.is_empty();
                if due && let Err(e) = store.flush_events().await {
                    tracing::warn!("cannot commit deferred audit events: {e}");
                }
            }
        });
    }
}
