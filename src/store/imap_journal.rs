//! IMAP state in the store: the per-lineage journal of fetched and finished
//! messages (`imap_journal`), and the mailbox triggers' cursors
//! (`imap_trigger_state`) and queued messages (`imap_trigger_runs`).
//!
//! Queueing a run for a message is one transaction: the message row (its
//! primary key is the idempotency key: bot, mailbox, UIDVALIDITY, UID), the
//! run row, its `run.queued` event and the trigger's cursor commit together
//! or not at all, so two `clerk serve` processes watching one mailbox, or a
//! restart in the middle, never queue a message twice.

use sqlx::Row as _;

use super::NewEvent;
use super::time::{format_ts, now_micros};
use super::{QueuedRun, Store, StoreError};

/// One message in a lineage's journal.
#[derive(Clone, Debug, PartialEq)]
pub struct ImapJournalEntry {
    pub lineage: String,
    pub server: String,
    pub mailbox: String,
    pub uidvalidity: i64,
    pub uid: i64,
    /// `fetched` or `done`.
    pub state: String,
    pub message_id: Option<String>,
    pub run_id: String,
    pub step: String,
    /// The action that finished it (`mail.move`, ...).
    pub action: Option<String>,
}

/// A mailbox trigger's cursor and health.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerState {
    pub bot: String,
    pub mailbox: String,
    pub server: String,
    pub uidvalidity: i64,
    pub last_uid: i64,
    pub last_contact: Option<String>,
    /// `connected`, `idle`, `polling`, `disconnected`, `failing`.
    pub status: String,
    pub error: Option<String>,
}

/// The message a trigger queues a run for.
#[derive(Clone, Debug)]
pub struct TriggerMessage {
    pub bot: String,
    pub mailbox: String,
    pub server: String,
    pub uidvalidity: i64,
    pub uid: i64,
    pub message_id: Option<String>,
}

impl Store {
    /// Every journal row of `lineage` for one mailbox on one server.
    pub async fn imap_journal(
        &self,
        lineage: &str,
        server: &str,
        mailbox: &str,
    ) -> Result<Vec<ImapJournalEntry>, StoreError> {
        let q = self.sql(
            "SELECT lineage, server, mailbox, uidvalidity, uid, state, message_id, run_id, step, action \
             FROM imap_journal WHERE lineage = $1 AND server = $2 AND mailbox = $3 ORDER BY uid",
        );
        let rows = sqlx::query(&q)
            .bind(lineage)
            .bind(server)
            .bind(mailbox)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read imap_journal"))?;
        rows.iter()
            .map(|r| {
                let get = |c: &str| -> Result<String, StoreError> {
                    r.try_get::<String, _>(c)
                        .map_err(|e| self.err(e, format_args!("read imap_journal.{c}")))
                };
                let int = |c: &str| -> Result<i64, StoreError> {
                    r.try_get::<i64, _>(c)
                        .map_err(|e| self.err(e, format_args!("read imap_journal.{c}")))
                };
                Ok(ImapJournalEntry {
                    lineage: get("lineage")?,
                    server: get("server")?,
                    mailbox: get("mailbox")?,
                    uidvalidity: int("uidvalidity")?,
                    uid: int("uid")?,
                    state: get("state")?,
                    message_id: r.try_get::<Option<String>, _>("message_id").ok().flatten(),
                    run_id: get("run_id")?,
                    step: get("step")?,
                    action: r.try_get::<Option<String>, _>("action").ok().flatten(),
                })
            })
            .collect()
    }

    /// Records entries; a message already `done` stays `done`.
    pub async fn imap_journal_record(
        &self,
        entries: &[ImapJournalEntry],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let q = self
            .sql(
                "INSERT INTO imap_journal (lineage, server, mailbox, uidvalidity, uid, state, \
                 message_id, run_id, step, action, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (lineage, server, mailbox, uidvalidity, uid) DO UPDATE SET \
                 state = CASE WHEN imap_journal.state = 'done' THEN 'done' ELSE excluded.state END, \
                 run_id = excluded.run_id, step = excluded.step, \
                 action = COALESCE(excluded.action, imap_journal.action), \
                 updated_at = excluded.updated_at",
            )
            .into_owned();
        let q = &q;
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let now = format_ts(&now_micros());
            for e in entries {
                sqlx::query(q)
                    .bind(e.lineage.as_str())
                    .bind(e.server.as_str())
                    .bind(e.mailbox.as_str())
                    .bind(e.uidvalidity)
                    .bind(e.uid)
                    .bind(e.state.as_str())
                    .bind(e.message_id.as_deref())
                    .bind(e.run_id.as_str())
                    .bind(e.step.as_str())
                    .bind(e.action.as_deref())
                    .bind(now.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, "write imap_journal"))?;
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit imap_journal"))
        })
        .await
    }

    /// The trigger's state for `bot` and `mailbox`, if it ever made contact.
    pub async fn trigger_state(
        &self,
        bot: &str,
        mailbox: &str,
    ) -> Result<Option<TriggerState>, StoreError> {
        Ok(self
            .trigger_states()
            .await?
            .into_iter()
            .find(|s| s.bot == bot && s.mailbox == mailbox))
    }

    /// Every trigger's state (for `clerk bots list`).
    pub async fn trigger_states(&self) -> Result<Vec<TriggerState>, StoreError> {
        let rows = sqlx::query(
            "SELECT bot, mailbox, server, uidvalidity, last_uid, last_contact, status, error \
             FROM imap_trigger_state ORDER BY bot, mailbox",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e, "read imap_trigger_state"))?;
        rows.iter()
            .map(|r| {
                let get = |c: &str| -> Result<String, StoreError> {
                    r.try_get::<String, _>(c)
                        .map_err(|e| self.err(e, format_args!("read imap_trigger_state.{c}")))
                };
                let int = |c: &str| -> Result<i64, StoreError> {
                    r.try_get::<i64, _>(c)
                        .map_err(|e| self.err(e, format_args!("read imap_trigger_state.{c}")))
                };
                Ok(TriggerState {
                    bot: get("bot")?,
                    mailbox: get("mailbox")?,
                    server: get("server")?,
                    uidvalidity: int("uidvalidity")?,
                    last_uid: int("last_uid")?,
                    last_contact: r
                        .try_get::<Option<String>, _>("last_contact")
                        .ok()
                        .flatten(),
                    status: get("status")?,
                    error: r.try_get::<Option<String>, _>("error").ok().flatten(),
                })
            })
            .collect()
    }

    /// Writes the trigger's state; `event` (a `trigger.*` audit event) is
    /// appended in the same transaction when given.
    pub async fn trigger_save(
        &self,
        state: &TriggerState,
        event: Option<NewEvent>,
    ) -> Result<(), StoreError> {
        let q = self
            .sql(
                "INSERT INTO imap_trigger_state (bot, mailbox, server, uidvalidity, last_uid, \
                 last_contact, status, error, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (bot, mailbox) DO UPDATE SET server = excluded.server, \
                 uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, \
                 last_contact = COALESCE(excluded.last_contact, imap_trigger_state.last_contact), \
                 status = excluded.status, error = excluded.error, updated_at = excluded.updated_at",
            )
            .into_owned();
        let (q, event) = (&q, &event);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            sqlx::query(q)
                .bind(state.bot.as_str())
                .bind(state.mailbox.as_str())
                .bind(state.server.as_str())
                .bind(state.uidvalidity)
                .bind(state.last_uid)
                .bind(state.last_contact.as_deref())
                .bind(state.status.as_str())
                .bind(state.error.as_deref())
                .bind(format_ts(&now_micros()))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, "write imap_trigger_state"))?;
            if let Some(ev) = event {
                self.append_in_tx(&mut tx, ev.clone()).await?;
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit imap_trigger_state"))
        })
        .await
    }

    /// Queues `run` for `msg` unless a run was already queued for it (by
    /// this or another process). Returns whether it was queued now. The
    /// run, its event and the message row commit together.
    pub async fn trigger_queue(
        &self,
        msg: &TriggerMessage,
        run: &QueuedRun,
    ) -> Result<bool, StoreError> {
        let inputs = serde_json::to_string(&run.inputs)
            .map_err(|e| self.other(format_args!("serialise inputs of run {}: {e}", run.id)))?;
        let (inputs, msg) = (&inputs, msg);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let now = format_ts(&now_micros());
            let q = self.sql(
                "INSERT INTO imap_trigger_runs (bot, mailbox, uidvalidity, uid, message_id, run_id, queued_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bot, mailbox, uidvalidity, uid) DO NOTHING \
                 RETURNING run_id",
            );
            let inserted = sqlx::query(&q)
                .bind(msg.bot.as_str())
                .bind(msg.mailbox.as_str())
                .bind(msg.uidvalidity)
                .bind(msg.uid)
                .bind(msg.message_id.as_deref())
                .bind(run.id.as_str())
                .bind(now.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e, "insert into imap_trigger_runs"))?
                .is_some();
            if inserted {
                let q = self.sql(
                    "INSERT INTO runs (id, bot, playbook, status, inputs, scheduled_for, queued_at, \
                     actor, attempt, due_at, overlap, retry_of, lineage) \
                     VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                );
                // One message, one lineage: a resume or retry of this run
                // continues the same message.
                let lineage = super::runs::default_lineage(
                    Some(&run.bot),
                    run.scheduled_for.as_ref(),
                    &run.id,
                );
                sqlx::query(&q)
                    .bind(run.id.as_str())
                    .bind(run.bot.as_str())
                    .bind(run.playbook.as_str())
                    .bind(inputs.as_str())
                    .bind(run.scheduled_for.as_ref().map(format_ts))
                    .bind(now.as_str())
                    .bind(run.actor.as_str())
                    .bind(run.attempt)
                    .bind(format_ts(&run.due_at))
                    .bind(run.overlap.as_str())
                    .bind(run.retry_of.as_deref())
                    .bind(lineage)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, "insert the triggered run"))?;
                let mut ev = run.event.clone();
                ev.run_id = Some(run.id.clone());
                self.append_in_tx(&mut tx, ev).await?;
            }
            let q = self.sql(
                "UPDATE imap_trigger_state SET last_uid = $1, updated_at = $2 \
                 WHERE bot = $3 AND mailbox = $4 AND uidvalidity = $5 AND last_uid < $1",
            );
            sqlx::query(&q)
                .bind(msg.uid)
                .bind(now.as_str())
                .bind(msg.bot.as_str())
                .bind(msg.mailbox.as_str())
                .bind(msg.uidvalidity)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, "advance imap_trigger_state"))?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit the triggered run"))?;
            Ok(inserted)
        })
        .await
    }

    /// Message ids a trigger already queued runs for (to recognise messages
    /// after a UIDVALIDITY change).
    pub async fn trigger_message_ids(
        &self,
        bot: &str,
        mailbox: &str,
    ) -> Result<Vec<String>, StoreError> {
        let q = self.sql(
            "SELECT message_id FROM imap_trigger_runs WHERE bot = $1 AND mailbox = $2 AND message_id IS NOT NULL",
        );
        let rows = sqlx::query(&q)
            .bind(bot)
            .bind(mailbox)
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read imap_trigger_runs"))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("message_id").ok())
            .collect())
    }

    /// Runs queued by a trigger that a crash or a stop left `interrupted`:
    /// `(run id, bot)`.
    pub async fn trigger_interrupted_runs(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id AS id, r.bot AS bot FROM runs r JOIN imap_trigger_runs t ON t.run_id = r.id \
             WHERE r.status = 'interrupted' ORDER BY r.id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(|e| self.err(e, "read interrupted triggered runs"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.try_get::<String, _>("id").ok()?,
                    r.try_get::<String, _>("bot").ok()?,
                ))
            })
            .collect())
    }

    /// Puts an interrupted run back in the queue (same row, same lineage),
    /// with `event` in the same transaction. False if it was no longer
    /// interrupted (another process resumed it).
    pub async fn trigger_requeue(&self, run_id: &str, event: NewEvent) -> Result<bool, StoreError> {
        let event = &event;
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let q = self.sql(
                "UPDATE runs SET status = 'queued', due_at = $1, worker = NULL, finished_at = NULL, \
                 error = NULL, failed_step = NULL WHERE id = $2 AND status = 'interrupted'",
            );
            let n = sqlx::query(&q)
                .bind(format_ts(&now_micros()))
                .bind(run_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, "requeue the interrupted run"))?
                .rows_affected();
            if n == 1 {
                self.append_in_tx(&mut tx, event.clone()).await?;
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit the requeued run"))?;
            Ok(n == 1)
        })
        .await
    }
}
