//! What an action gets to work with: the run, the step, configuration, secrets,
//! per-run resources (a browser session), cancellation, and a note for the audit.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::audit::Recorder;
use crate::config::Config;
use crate::secrets::Secrets;

/// Facts about the run an action belongs to.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: String,
    pub workspace: PathBuf,
    pub playbook: PathBuf,
    pub actor: String,
    pub bot: Option<String>,
    /// `.clerk/artifacts/<run>/`: screenshots, page HTML, downloads.
    pub artifacts_dir: PathBuf,
    /// The job this run belongs to: `bot:NAME@<scheduled_for>` or
    /// `run:<first run id>`, shared by every run that continues it.
    pub lineage: String,
}

/// Facts about the step being run.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// `4/item[17]/2`
    pub path: String,
    pub name: Option<String>,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub sensitive: bool,
    /// The stable step id (`3.sign-in`, or the step's `id:`); empty outside playbooks.
    pub id: String,
    /// The key (`checkpoint`) of the loop item this step runs in, if any.
    pub item_key: Option<String>,
}

/// What an action reports for its audit event besides its arguments.
#[derive(Debug, Default, Clone)]
pub struct AuditNote {
    pub target: Option<String>,
    pub detail: serde_json::Map<String, serde_json::Value>,
    /// Files written under the artifacts folder (path relative to workspace, sha256).
    pub artifacts: Vec<(String, String)>,
    /// The step's result as a template value, replacing the JSON result the
    /// action returns (which then only summarises it): a big result (the
    /// rows of `sheet.read`) stays in its compact form instead of becoming
    /// a JSON tree. Set through [`ActionContext::set_result`].
    pub result: Option<minijinja::value::Value>,
}

/// A resource that lives as long as the run (a browser session); closed at its end.
pub trait Resource: Any + Send + Sync {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Per-run resources, created lazily by actions and closed by the engine when
/// the run ends — on success, failure, timeout and cancellation alike.
#[derive(Default)]
pub struct RunResources {
    slots: tokio::sync::Mutex<HashMap<&'static str, Box<dyn Resource>>>,
}

impl RunResources {
    /// Locks the slot table; actions take their resource out with `get_mut`.
    pub async fn lock(
        &self,
    ) -> tokio::sync::MutexGuard<'_, HashMap<&'static str, Box<dyn Resource>>> {
        self.slots.lock().await
    }

    /// Closes every resource (idempotent).
    pub async fn close_all(&self) {
        let drained: Vec<Box<dyn Resource>> = {
            let mut slots = self.slots.lock().await;
            slots.drain().map(|(_, r)| r).collect()
        };
        for r in drained {
            r.close().await;
        }
    }
}

/// Everything an action may use. One struct, never a long argument list.
pub struct ActionContext<'a> {
    pub run: &'a RunInfo,
    pub step: &'a StepInfo,
    pub config: &'a Config,
    pub secrets: &'a Arc<Secrets>,
    pub resources: &'a RunResources,
    pub recorder: &'a Recorder,
    /// The mail and IMAP journals, the run's lineage and report: the only
    /// way actions reach what the store keeps (never the store itself).
    pub journal: &'a dyn super::Journal,
    pub cancel: &'a CancellationToken,
    /// The step's `timeout`, if set (element waits use it as their limit).
    pub timeout: Option<Duration>,
    pub note: AuditNote,
}

impl ActionContext<'_> {
    /// Resolves a path from a playbook against the workspace, refusing one that
    /// leads outside it (after `..` and symlinks) unless clerk.yaml allows its
    /// folder in `allowed_roots` (a usage error: retrying cannot help).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, super::ActionError> {
        super::boundary::check(&self.run.workspace, &self.config.allowed_roots, path)
            .map_err(super::ActionError::usage)
    }

    /// A path as shown in the audit trail: relative to the workspace when inside it.
    pub fn display_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.run.workspace)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    pub fn target(&mut self, target: impl Into<String>) {
        self.note.target = Some(target.into());
    }

    pub fn detail(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.note.detail.insert(key.to_string(), value.into());
    }

    /// Gives the step's result as a template value (see [`AuditNote::result`]).
    pub fn set_result(&mut self, value: minijinja::value::Value) {
        self.note.result = Some(value);
    }

    /// Records a file written to the artifacts folder.
    pub fn artifact(&mut self, path: &Path, sha256: &str) {
        let shown = self.display_path(path);
        self.note.artifacts.push((shown, sha256.to_string()));
    }
}
