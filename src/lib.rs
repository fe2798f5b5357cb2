//! clerk: a virtual-worker runtime.
//!
//! A back-office team describes copying work as a YAML playbook; clerk runs it
//! (now, or on a bot's schedule) through real browsers, spreadsheets and mail,
//! and records every action in a hash-chained audit trail.
//!
//! Dependencies point one way: `cli → scheduler → engine → actions →
//! (template, secrets, audit::Recorder)`, and `audit → store`. `playbook` and
//! `template` are leaves.

pub mod actions;
pub mod audit;
pub mod cli;
pub mod config;
pub mod engine;
pub mod fsutil;
pub mod playbook;
pub mod process;
pub mod report;
pub mod scheduler;
pub mod secrets;
pub mod server;
pub mod store;
pub mod template;
pub mod textdiff;
mod tmplcheck;
