//! Exactly once, per lineage. Every message `mail.fetch` hands to a run is
//! journaled (lineage, server, mailbox, UIDVALIDITY, UID) as `fetched`;
//! `mail.move`, `mail.delete` and `mail.flag` mark it `done`. A run that
//! continues the lineage (a bot retry, a resumed run) does not get a `done`
//! message again, and finds a move it already made reported as done rather
//! than failing on a UID that has left the mailbox. A message only
//! `fetched` is handed out again: its handling never finished.
//!
//! UIDs mean nothing across a UIDVALIDITY change, so a change is an error
//! that names both values; clerk does not guess which messages were handled.

use crate::actions::journal::ImapMessage as ImapJournalEntry;
use crate::actions::{ActionContext, ActionError};

/// The current run's lineage (the one [`super::super::journal::lineage`]
/// gives; issue 10 makes that read `runs.lineage`).
pub async fn lineage(ctx: &ActionContext<'_>) -> Result<String, ActionError> {
    super::super::journal::lineage(ctx)
        .await
        .map_err(ActionError::retryable)
}

/// This lineage's journal for one mailbox, checked against the mailbox's
/// current UIDVALIDITY.
pub async fn load(
    ctx: &mut ActionContext<'_>,
    lineage: &str,
    server: &str,
    mailbox: &str,
    uidvalidity: u32,
) -> Result<Vec<ImapJournalEntry>, ActionError> {
    let entries = ctx
        .journal
        .imap_messages(lineage, server, mailbox)
        .await
        .map_err(|e| {
            ActionError::retryable(anyhow::anyhow!(
                "cannot read the IMAP journal (so not touching the mailbox, to avoid handling a message twice): {e:#}"
            ))
        })?;
    if let Some(old) = entries
        .iter()
        .find(|e| e.uidvalidity != i64::from(uidvalidity))
    {
        ctx.detail(
            "uidvalidity_changed",
            serde_json::json!({ "was": old.uidvalidity, "now": uidvalidity }),
        );
        return Err(ActionError::business(anyhow::anyhow!(
            "the UIDVALIDITY of {mailbox} on {server} changed from {} to {uidvalidity} since this run \
             (lineage {lineage}) last read it: its UIDs no longer name the same messages, so clerk \
             will not guess which ones were already handled; check the mailbox by hand, then start a new run",
            old.uidvalidity
        )));
    }
    Ok(entries)
}

/// Records messages in the journal (`fetched` or `done`).
pub async fn record(
    ctx: &ActionContext<'_>,
    entries: Vec<ImapJournalEntry>,
) -> Result<(), ActionError> {
    ctx.journal
        .record_imap_messages(&entries)
        .await
        .map_err(|e| {
            ActionError::retryable(anyhow::anyhow!("cannot write the IMAP journal: {e:#}"))
        })
}

/// Where messages live, as the journal names them.
pub struct Place<'a> {
    pub lineage: &'a str,
    pub server: &'a str,
    pub mailbox: &'a str,
    pub uidvalidity: u32,
}

/// A journal row for the current run and step.
pub fn entry(
    ctx: &ActionContext<'_>,
    at: &Place<'_>,
    uid: u32,
    state: &str,
    message_id: Option<String>,
    action: Option<&str>,
) -> ImapJournalEntry {
    ImapJournalEntry {
        lineage: at.lineage.to_string(),
        server: at.server.to_string(),
        mailbox: at.mailbox.to_string(),
        uidvalidity: i64::from(at.uidvalidity),
        uid: i64::from(uid),
        state: state.to_string(),
        message_id,
        run_id: ctx.run.id.clone(),
        step: ctx.step.path.clone(),
        action: action.map(str::to_string),
    }
}
