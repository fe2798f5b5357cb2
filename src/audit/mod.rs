//! The audit trail: every action a bot takes, appended to one hash-chained
//! log in the store (`audit_events`), so that an auditor can see what was done,
//! to what and when — and prove afterwards that nothing was edited or deleted.
//!
//! - [`event`]: the event model ([`NewEvent`] to write, [`AuditEvent`] as stored).
//! - [`chain`]: canonical JSON and the SHA-256 hash chain.
//! - [`recorder`]: [`Recorder`], the one writer; masks secrets before hashing.
//! - [`verify`]: recomputes the chain and names the first bad event.
//! - [`export`]: JSONL / CSV export for auditors.

pub mod chain;
pub mod event;
pub mod export;
pub mod recorder;
pub mod verify;

pub use chain::{GENESIS_HASH, canonical_json, event_hash};
pub use event::{AuditEvent, NewEvent, OptString};
pub use export::{ExportFormat, export, export_to_file};
pub use recorder::{Recorder, RedactFn};
pub use verify::{BadEvent, VerifyReport, verify};
