//! The `audit:` section of clerk.yaml: where the installation's signing key
//! and the append-only checkpoint file live, and how often `clerk serve`
//! writes a checkpoint.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::actions::types::DurationArg;

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The Ed25519 signing key (`clerk audit keygen` writes it, mode 0600; the
    /// public key is beside it as `<key>.pub`). Relative to the workspace.
    /// Keep it outside the database — and ideally off the database's backups.
    pub key: String,
    /// The append-only file every checkpoint is also written to (one JSON
    /// object per line). Relative to the workspace; put it on another
    /// machine's share, or ship it elsewhere, for real protection.
    pub checkpoints: String,
    /// `clerk serve` writes a checkpoint this often (and one when it stops).
    #[serde(serialize_with = "ser_duration", deserialize_with = "de_duration")]
    #[schemars(with = "DurationArg")]
    pub checkpoint_every: Duration,
    /// Write a checkpoint at the end of every run (default true).
    pub checkpoint_after_run: bool,
    /// Also POST every checkpoint to an HTTP(S) endpoint (docs/audit.md).
    pub http: Option<HttpSinkConfig>,
    /// Also mail the checkpoints to the auditors, as a digest (docs/audit.md).
    pub smtp: Option<SmtpSinkConfig>,
}

/// `audit.http`: where each checkpoint is POSTed as JSON.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// `https://audit.example/clerk/checkpoints`.
    pub url: String,
    /// Per attempt (connect, send, answer). Default 5s.
    #[serde(
        default = "default_http_timeout",
        serialize_with = "ser_duration",
        deserialize_with = "de_duration"
    )]
    #[schemars(with = "DurationArg")]
    pub timeout: Duration,
    /// Attempts per checkpoint before the delivery is given up until the
    /// next one (default 3; 0.5 s, 1 s... between them).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Name of a secret sent as `Authorization: Bearer <secret>`.
    #[serde(default)]
    pub token_secret: Option<String>,
}

/// `audit.smtp`: the checkpoints mailed to the auditors (server: `mail.smtp`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpSinkConfig {
    /// The auditors' addresses.
    pub to: Vec<String>,
    /// At most one mail per this (default 24h: a daily digest); `0s` mails
    /// every checkpoint as it is taken.
    #[serde(
        default = "default_every",
        serialize_with = "ser_duration",
        deserialize_with = "de_duration"
    )]
    #[schemars(with = "DurationArg")]
    pub every: Duration,
    /// Subject prefix (the checkpoint range follows).
    #[serde(default = "default_subject")]
    pub subject: String,
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_attempts() -> u32 {
    3
}
fn default_every() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_subject() -> String {
    "clerk audit checkpoints".into()
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            key: ".clerk/keys/audit-ed25519.key".into(),
            checkpoints: ".clerk/checkpoints.jsonl".into(),
            checkpoint_every: Duration::from_secs(600),
            checkpoint_after_run: true,
            http: None,
            smtp: None,
        }
    }
}

impl AuditConfig {
    /// The signing key's path, resolved against the workspace.
    pub fn key_path(&self, workspace: &Path) -> PathBuf {
        workspace.join(&self.key)
    }

    /// The checkpoint file's path, resolved against the workspace.
    pub fn checkpoints_path(&self, workspace: &Path) -> PathBuf {
        workspace.join(&self.checkpoints)
    }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    DurationArg::deserialize(d).map(|a| a.0)
}
