//! The narrow door from actions to what clerk keeps besides the audit trail:
//! the sent-mail journal (resend protection), the IMAP journal (exactly once
//! per lineage), the run's lineage and the run report. Actions see this
//! trait on their [`super::ActionContext`], never the store itself; the
//! engine implements it over the store (`crate::engine::journal`), and a
//! test can implement it over anything.

use std::path::Path;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

/// One message a transport accepted, under its idempotency key.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMail {
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

/// One message in a lineage's IMAP journal.
#[derive(Clone, Debug, PartialEq)]
pub struct ImapMessage {
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

/// What the HTML run report should contain (see `clerk report`).
#[derive(Clone, Debug, Default)]
pub struct ReportRequest {
    /// Embed screenshots of every step, not only of failed ones.
    pub all_screenshots: bool,
}

/// Everything actions may read or write outside their own arguments and the
/// audit trail. Errors are plain `anyhow` errors; the calling action decides
/// whether they are retryable.
pub trait Journal: Send + Sync {
    /// The lineage recorded for run `run_id`, if the run is known.
    fn run_lineage<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, anyhow::Result<Option<String>>>;

    /// The accepted message recorded under `key`, if any.
    fn sent_mail<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<SentMail>>>;

    /// Records an accepted message (a row already under its key is kept).
    fn record_sent_mail<'a>(&'a self, mail: &'a SentMail) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Every IMAP journal row of `lineage` for one mailbox on one server.
    fn imap_messages<'a>(
        &'a self,
        lineage: &'a str,
        server: &'a str,
        mailbox: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Vec<ImapMessage>>>;

    /// Records IMAP journal rows; a message already `done` stays `done`.
    fn record_imap_messages<'a>(
        &'a self,
        messages: &'a [ImapMessage],
    ) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Writes the HTML report of run `run_id` (as recorded so far) to `out`;
    /// returns its size in bytes.
    fn write_report<'a>(
        &'a self,
        run_id: &'a str,
        out: &'a Path,
        workspace: &'a Path,
        request: &'a ReportRequest,
    ) -> BoxFuture<'a, anyhow::Result<u64>>;
}
