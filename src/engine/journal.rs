//! [`StoreJournal`]: the engine's implementation of the actions' narrow
//! [`Journal`] over the store. Actions never see the store; they get this
//! through their context, and it converts between their row types and the
//! store's.

use std::path::Path;

use futures::future::BoxFuture;

use crate::actions::journal::{ImapMessage, Journal, ReportRequest, SentMail};
use crate::store::{ImapJournalEntry, MailJournalEntry, Store};

/// The journal of runs kept in `store`.
#[derive(Clone, Debug)]
pub struct StoreJournal {
    store: Store,
}

impl StoreJournal {
    pub fn new(store: Store) -> Self {
        StoreJournal { store }
    }
}

fn to_store_imap(m: &ImapMessage) -> ImapJournalEntry {
    ImapJournalEntry {
        lineage: m.lineage.clone(),
        server: m.server.clone(),
        mailbox: m.mailbox.clone(),
        uidvalidity: m.uidvalidity,
        uid: m.uid,
        state: m.state.clone(),
        message_id: m.message_id.clone(),
        run_id: m.run_id.clone(),
        step: m.step.clone(),
        action: m.action.clone(),
    }
}

fn from_store_imap(e: ImapJournalEntry) -> ImapMessage {
    ImapMessage {
        lineage: e.lineage,
        server: e.server,
        mailbox: e.mailbox,
        uidvalidity: e.uidvalidity,
        uid: e.uid,
        state: e.state,
        message_id: e.message_id,
        run_id: e.run_id,
        step: e.step,
        action: e.action,
    }
}

impl Journal for StoreJournal {
    fn run_lineage<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, anyhow::Result<Option<String>>> {
        Box::pin(async move { Ok(self.store.get_run(run_id).await?.map(|r| r.lineage)) })
    }

    fn sent_mail<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<SentMail>>> {
        Box::pin(async move {
            Ok(self.store.mail_journal_get(key).await?.map(|e| SentMail {
                key: e.key,
                run_id: e.run_id,
                step: e.step,
                message_id: e.message_id,
                transport: e.transport,
                recipients: e.recipients,
                subject: e.subject,
                message_sha256: e.message_sha256,
                reply: e.reply,
                sent_at: e.sent_at,
            }))
        })
    }

    fn record_sent_mail<'a>(&'a self, m: &'a SentMail) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let entry = MailJournalEntry {
                key: m.key.clone(),
                run_id: m.run_id.clone(),
                step: m.step.clone(),
                message_id: m.message_id.clone(),
                transport: m.transport.clone(),
                recipients: m.recipients.clone(),
                subject: m.subject.clone(),
                message_sha256: m.message_sha256.clone(),
                reply: m.reply.clone(),
                sent_at: m.sent_at,
            };
            Ok(self.store.mail_journal_record(&entry).await?)
        })
    }

    fn imap_messages<'a>(
        &'a self,
        lineage: &'a str,
        server: &'a str,
        mailbox: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Vec<ImapMessage>>> {
        Box::pin(async move {
            let rows = self.store.imap_journal(lineage, server, mailbox).await?;
            Ok(rows.into_iter().map(from_store_imap).collect())
        })
    }

    fn record_imap_messages<'a>(
        &'a self,
        messages: &'a [ImapMessage],
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let rows: Vec<ImapJournalEntry> = messages.iter().map(to_store_imap).collect();
            Ok(self.store.imap_journal_record(&rows).await?)
        })
    }

    fn write_report<'a>(
        &'a self,
        run_id: &'a str,
        out: &'a Path,
        workspace: &'a Path,
        request: &'a ReportRequest,
    ) -> BoxFuture<'a, anyhow::Result<u64>> {
        Box::pin(async move {
            let opts = crate::report::ReportOptions {
                all_screenshots: request.all_screenshots,
                ..Default::default()
            };
            crate::report::write(&self.store, run_id, out, workspace, &opts).await
        })
    }
}
