//! The audit trail: every action a bot takes, appended to one hash-chained
//! log in the store (`audit_events`), so that an auditor can see what was done,
//! to what and when — and prove afterwards that nothing was edited or deleted.
//!
//! - [`event`]: the event model ([`NewEvent`] to write, [`AuditEvent`] as stored).
//! - [`chain`]: hash format 1 (clerk's own canonical JSON), kept for old events.
//! - [`format`]: the versioned hash formats; format 2 is RFC 8785 (JCS).
//! - [`recorder`]: [`Recorder`], the one writer; masks secrets before hashing.
//! - [`verify`]: recomputes the chain and names the first bad event.
//! - [`export`]: JSONL / CSV export for auditors.
//! - [`keys`], [`checkpoint`]: the installation's Ed25519 key and signed
//!   checkpoints, in the chain and in an append-only file outside it.
//! - [`sink`]: copies of the checkpoints sent elsewhere (HTTP POST, a mail
//!   digest to the auditors).
//! - [`archive`]: retention that keeps the proof (`clerk audit archive`).
//! - [`config`]: the `audit:` section of clerk.yaml.

pub mod archive;
pub mod chain;
pub mod checkpoint;
pub mod config;
pub mod event;
pub mod export;
pub mod format;
pub mod keys;
pub mod recorder;
pub mod sink;
pub mod verify;

pub use chain::{GENESIS_HASH, canonical_json, event_hash};
pub use event::{AuditEvent, NewEvent, OptString};
pub use export::{ExportFormat, export, export_to_file};
pub use recorder::{Recorder, RedactFn};
pub use verify::{
    BadArtifact, BadCheckpoint, BadEvent, BadRun, VerifyOptions, VerifyReport, verify,
    verify_export, verify_with,
};
