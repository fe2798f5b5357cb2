//! Mail actions: `mail.send`, through lettre, over SMTP or into the file outbox.
//!
//! `args` holds the typed arguments (the user documentation), `message` checks
//! addresses and attachments and assembles the MIME message, `transport`
//! delivers it (an `.eml` file in `.clerk/outbox/` by default, or SMTP),
//! `journal` keeps a run retried as a whole from sending the same mail twice,
//! and `send` is the action that ties them together and reports to the audit.

mod args;
pub mod imap;
mod journal;
mod message;
mod send;
mod transport;

pub use imap::{Delete, Fetch, Flag, Move};
pub use send::Send;
