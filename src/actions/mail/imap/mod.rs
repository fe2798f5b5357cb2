//! Reading mail over IMAP: `mail.fetch`, `mail.move`, `mail.flag`,
//! `mail.delete`, and the connection the scheduler's mailbox trigger uses.
//!
//! `client` connects (plain, STARTTLS, TLS) and sorts failures for retries,
//! `parse` decodes messages with mail-parser and saves attachments under
//! names from `names`, `journal` keeps a lineage from handling a message
//! twice, `fetch` and `manage` are the actions.

pub mod client;
mod fetch;
mod journal;
mod manage;
mod names;
pub mod parse;

pub use fetch::{Fetch, human_size, journal_server};
pub use manage::{Delete, Flag, Move};
