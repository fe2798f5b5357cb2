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
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            key: ".clerk/keys/audit-ed25519.key".into(),
            checkpoints: ".clerk/checkpoints.jsonl".into(),
            checkpoint_every: Duration::from_secs(600),
            checkpoint_after_run: true,
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
