//! The sent-mail journal (`mail_journal`): which messages a transport accepted,
//! under an idempotency key, so that a run retried as a whole does not mail
//! the same people twice. `mail.send` writes a row right after acceptance and
//! looks its key up before sending.

use chrono::{DateTime, Utc};
use sqlx::Row as _;

use super::time::{format_ts, parse_ts};
use super::{Store, StoreError};

/// One accepted message.
#[derive(Clone, Debug, PartialEq)]
pub struct MailJournalEntry {
    pub key: String,
    pub run_id: String,
    /// Step path, e.g. `4/item[2]/1`.
    pub step: String,
    /// `<...>` included.
    pub message_id: String,
    /// `file` or `smtp`.
    pub transport: String,
    /// Envelope recipients (to, cc, bcc).
    pub recipients: Vec<String>,
    /// Secrets masked.
    pub subject: String,
    pub message_sha256: String,
    /// The server's final reply, or where the outbox file went.
    pub reply: String,
    pub sent_at: DateTime<Utc>,
}

impl Store {
    /// The accepted message recorded under `key`, if any.
    pub async fn mail_journal_get(
        &self,
        key: &str,
    ) -> Result<Option<MailJournalEntry>, StoreError> {
        let q = self.sql(
            "SELECT idempotency_key, run_id, step, message_id, transport, recipients, subject, \
             message_sha256, reply, sent_at FROM mail_journal WHERE idempotency_key = $1",
        );
        let row = sqlx::query(&q)
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| self.err(e, "read mail_journal"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let text = |col: &str| -> Result<String, StoreError> {
            row.try_get::<String, _>(col)
                .map_err(|e| self.err(e, format_args!("read mail_journal.{col}")))
        };
        let recipients_text = text("recipients")?;
        let recipients: Vec<String> = serde_json::from_str(&recipients_text).map_err(|e| {
            self.other(format_args!(
                "mail_journal.recipients is not a JSON list: {e}"
            ))
        })?;
        let sent_at_text = text("sent_at")?;
        let sent_at = parse_ts(&sent_at_text).ok_or_else(|| {
            self.other(format_args!(
                "mail_journal.sent_at `{sent_at_text}` is not a timestamp"
            ))
        })?;
        Ok(Some(MailJournalEntry {
            key: text("idempotency_key")?,
            run_id: text("run_id")?,
            step: text("step")?,
            message_id: text("message_id")?,
            transport: text("transport")?,
            recipients,
            subject: text("subject")?,
            message_sha256: text("message_sha256")?,
            reply: text("reply")?,
            sent_at,
        }))
    }

    /// Records an accepted message. A row already under the key is kept (the
    /// first acceptance is the one that counts).
    pub async fn mail_journal_record(&self, entry: &MailJournalEntry) -> Result<(), StoreError> {
        let recipients = serde_json::to_string(&entry.recipients)
            .map_err(|e| self.other(format_args!("serialise mail recipients: {e}")))?;
        let recipients = recipients.as_str();
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            let q = self.sql(
                "INSERT INTO mail_journal (idempotency_key, run_id, step, message_id, transport, \
                 recipients, subject, message_sha256, reply, sent_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (idempotency_key) DO NOTHING",
            );
            sqlx::query(&q)
                .bind(entry.key.as_str())
                .bind(entry.run_id.as_str())
                .bind(entry.step.as_str())
                .bind(entry.message_id.as_str())
                .bind(entry.transport.as_str())
                .bind(recipients)
                .bind(entry.subject.as_str())
                .bind(entry.message_sha256.as_str())
                .bind(entry.reply.as_str())
                .bind(format_ts(&entry.sent_at))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, "insert into mail_journal"))?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, "commit mail_journal"))
        })
        .await
    }
}
