//! Deployed versions of the bots: what `clerk deploy` records and which bot
//! set `clerk serve` runs.
//!
//! - **Deploy** validates a bots folder exactly as `clerk validate` and
//!   `clerk serve` do (every problem as `path:line:col`), then stores each bot
//!   file and its playbook (text, SHA-256), who, when and from where as the
//!   next version, with a `deploy.created` audit event in the same
//!   transaction. Rolling back is deploying an older version's set again
//!   ([`redeploy`]): a new version whose `rollback_of` names the old one.
//! - **Serve** asks [`Source`] for the bots to run: the store's newest
//!   deployment if there is one, else the local folder (the single-machine
//!   mode). A worker whose local folder differs from the deployment says so
//!   (log + `deploy.local_differs` event) and runs the deployment. New
//!   deployments are picked up while serve runs, and checked again right
//!   before each run starts, so no run that starts after a deploy committed
//!   runs an older version.
//! - **Run from memory.** A deployed playbook is loaded from the stored text
//!   and never read from a file; its path (relative to the workspace) is only
//!   a label. Relative paths inside a playbook (input files, outputs) resolve
//!   against the workspace of the worker, as they always do — a playbook has
//!   no other files of its own (clerk has no sub-playbooks), so nothing needs
//!   to be written to disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::bot::{Bot, load_bot_with, load_bots_dir};
use crate::audit::{NewEvent, Recorder};
use crate::fsutil::{normalize, sha256_hex};
use crate::playbook::{Diagnostics, Playbook};
use crate::store::{DeployedBot, Deployment, NewDeployment, RunChange, RunRow, Store};

/// How often a running serve looks for a new deployment (runs also check
/// right before they start).
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// After a deployment removed bots, their queued runs are looked for again
/// this much later.
const RECHECK_AFTER: Duration = Duration::from_secs(5);

/// A bots folder read and validated for deploying.
#[derive(Debug, Clone)]
pub struct Collected {
    pub bots: Vec<DeployedBot>,
    pub contents: BTreeMap<String, String>,
    pub set_sha256: String,
}

/// Why a deploy did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The folder (or the version re-deployed) has problems; nothing stored.
    #[error("{} problem(s); nothing was deployed", .0.len())]
    Invalid(Diagnostics),
    #[error("no deployed version {0} in the store")]
    NoSuchVersion(i64),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize)]
pub struct DeployOutcome {
    /// The new version, or the existing one that already has this content.
    pub version: i64,
    /// False when the newest version already had exactly this set.
    pub created: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub rollback_of: Option<i64>,
}

/// A path as recorded: relative to the workspace when inside it.
fn rel(workspace: &Path, p: &Path) -> String {
    p.strip_prefix(workspace)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The recorded path on this machine.
fn full(workspace: &Path, recorded: &str) -> PathBuf {
    normalize(&workspace.join(recorded))
}

fn set_sha256(bots: &[DeployedBot]) -> String {
    let mut lines: Vec<String> = bots
        .iter()
        .map(|b| {
            format!(
                "{} {} {} {} {}\n",
                b.bot, b.bot_path, b.bot_sha256, b.playbook_path, b.playbook_sha256
            )
        })
        .collect();
    lines.sort();
    sha256_hex(lines.concat().as_bytes())
}

/// Reads and validates the bots folder `dir` for deploying. The text stored
/// is the text validated: each bot is checked again from the bytes read here.
pub fn collect(workspace: &Path, dir: &Path) -> Result<Collected, Diagnostics> {
    let (bots, diags) = load_bots_dir(dir);
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut out = Vec::new();
    let mut contents = BTreeMap::new();
    let mut problems = Diagnostics::default();
    let start = crate::playbook::yaml::Pos { line: 1, col: 1 };
    for b in bots {
        let (bot_text, pb_text) = match (
            std::fs::read_to_string(&b.path),
            std::fs::read_to_string(&b.playbook_path),
        ) {
            (Ok(a), Ok(p)) => (a, p),
            (Err(e), _) => {
                problems.push(&b.path, start, format!("cannot read the bot file: {e}"));
                continue;
            }
            (_, Err(e)) => {
                problems.push(
                    &b.playbook_path,
                    start,
                    format!("cannot read the playbook: {e}"),
                );
                continue;
            }
        };
        let pb = match crate::engine::load_playbook_str(&pb_text, &b.playbook_path) {
            Ok(p) => Arc::new(p),
            Err(d) => {
                problems.0.extend(d.0);
                continue;
            }
        };
        let pbs = BTreeMap::from([(b.playbook_path.clone(), pb.clone())]);
        let checked = match load_bot_with(&bot_text, &b.path, &pbs) {
            Ok(c) => c,
            Err(d) => {
                problems.0.extend(d.0);
                continue;
            }
        };
        let entry = DeployedBot {
            bot: checked.name.clone(),
            bot_path: rel(workspace, &b.path),
            bot_sha256: sha256_hex(bot_text.as_bytes()),
            playbook_path: rel(workspace, &b.playbook_path),
            playbook_sha256: pb.sha256.clone(),
        };
        contents.insert(entry.bot_sha256.clone(), bot_text);
        contents.insert(entry.playbook_sha256.clone(), pb_text);
        out.push(entry);
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(problems);
    }
    out.sort_by(|a, b| a.bot.cmp(&b.bot));
    Ok(Collected {
        set_sha256: set_sha256(&out),
        bots: out,
        contents,
    })
}

/// Compares two sets by bot name: (added, removed, changed, unchanged).
fn compare(
    old: &[DeployedBot],
    new: &[DeployedBot],
) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>) {
    let old: BTreeMap<&str, &DeployedBot> = old.iter().map(|b| (b.bot.as_str(), b)).collect();
    let new_map: BTreeMap<&str, &DeployedBot> = new.iter().map(|b| (b.bot.as_str(), b)).collect();
    let (mut added, mut changed, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
    for (name, b) in &new_map {
        match old.get(name) {
            None => added.push(name.to_string()),
            Some(o) if *o != *b => changed.push(name.to_string()),
            Some(_) => unchanged.push(name.to_string()),
        }
    }
    let removed = old
        .keys()
        .filter(|n| !new_map.contains_key(*n))
        .map(|n| n.to_string())
        .collect();
    (added, removed, changed, unchanged)
}

/// Stores `set` as the next version (unless the newest already is exactly
/// this set), with its `deploy.created` event.
async fn store_version(
    recorder: &Recorder,
    set: Collected,
    actor: &str,
    source: &str,
    rollback_of: Option<i64>,
) -> anyhow::Result<DeployOutcome> {
    let store = recorder.store();
    let latest = match store.latest_deploy_version().await? {
        Some(v) => store.deployment(v).await?,
        None => None,
    };
    let before: &[DeployedBot] = latest.as_ref().map_or(&[], |d| &d.bots);
    let (added, removed, changed, unchanged) = compare(before, &set.bots);
    if let Some(d) = &latest
        && d.set_sha256 == set.set_sha256
    {
        return Ok(DeployOutcome {
            version: d.version,
            created: false,
            added,
            removed,
            changed,
            unchanged,
            rollback_of,
        });
    }
    let host = crate::process::display_hostname();
    let new = NewDeployment {
        deployed_by: actor.to_string(),
        host: host.clone(),
        source: source.to_string(),
        set_sha256: set.set_sha256.clone(),
        rollback_of,
        bots: set.bots.clone(),
        contents: set.contents,
    };
    let detail_bots: Vec<_> = set
        .bots
        .iter()
        .map(|b| {
            json!({
                "bot": b.bot, "bot_path": b.bot_path, "bot_sha256": b.bot_sha256,
                "playbook": b.playbook_path, "playbook_sha256": b.playbook_sha256,
            })
        })
        .collect();
    let previous = latest.as_ref().map(|d| d.version);
    let (a, r, c) = (added.clone(), removed.clone(), changed.clone());
    let event = move |version: i64| {
        recorder.redact_event(
            NewEvent::new("deploy.created", actor)
                .target(format!("version {version}"))
                .outcome("ok")
                .detail(json!({
                    "version": version,
                    "previous": previous,
                    "rollback_of": rollback_of,
                    "host": host,
                    "source": source,
                    "set_sha256": set.set_sha256,
                    "bots": detail_bots,
                    "added": a,
                    "removed": r,
                    "changed": c,
                })),
        )
    };
    let version = store
        .create_deployment(&new, &event)
        .await
        .context("cannot store the deployed version")?;
    Ok(DeployOutcome {
        version,
        created: true,
        added,
        removed,
        changed,
        unchanged,
        rollback_of,
    })
}

/// `clerk deploy`: validates the folder `dir` and stores it as a new version.
pub async fn deploy(
    recorder: &Recorder,
    workspace: &Path,
    dir: &Path,
    actor: &str,
) -> Result<DeployOutcome, DeployError> {
    let set = collect(workspace, dir).map_err(DeployError::Invalid)?;
    let source = dir.display().to_string();
    Ok(store_version(recorder, set, actor, &source, None).await?)
}

/// `clerk deploy --from-version N`: deploys version N's set again as a new
/// version (a rollback), after checking it still validates.
pub async fn redeploy(
    recorder: &Recorder,
    workspace: &Path,
    version: i64,
    actor: &str,
) -> Result<DeployOutcome, DeployError> {
    let store = recorder.store();
    let old = store
        .deployment(version)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or(DeployError::NoSuchVersion(version))?;
    let (_, contents) = load_deployment(store, workspace, &old).await?;
    let set = Collected {
        set_sha256: set_sha256(&old.bots),
        bots: old.bots.clone(),
        contents,
    };
    let source = format!("version {version}");
    Ok(store_version(recorder, set, actor, &source, Some(version)).await?)
}

/// Loads and checks the bots of a deployed version from the stored text;
/// also returns the texts by SHA-256.
pub async fn load_deployment(
    store: &Store,
    workspace: &Path,
    d: &Deployment,
) -> Result<(Vec<Bot>, BTreeMap<String, String>), DeployError> {
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for b in &d.bots {
        for sha in [&b.bot_sha256, &b.playbook_sha256] {
            if texts.contains_key(sha) {
                continue;
            }
            let text = store
                .deployed_content(sha)
                .await
                .map_err(anyhow::Error::from)?
                .with_context(|| {
                    format!(
                        "deployed version {}: the text of {} (SHA-256 {sha}) is missing from the store",
                        d.version, b.bot
                    )
                })?;
            texts.insert(sha.clone(), text);
        }
    }
    let mut playbooks: BTreeMap<PathBuf, Arc<Playbook>> = BTreeMap::new();
    let mut diags = Diagnostics::default();
    let mut bots = Vec::new();
    for b in &d.bots {
        let pb_path = full(workspace, &b.playbook_path);
        if !playbooks.contains_key(&pb_path) {
            match crate::engine::load_playbook_str(&texts[&b.playbook_sha256], &pb_path) {
                Ok(p) => {
                    playbooks.insert(pb_path.clone(), Arc::new(p));
                }
                Err(e) => {
                    diags.0.extend(e.0);
                    continue;
                }
            }
        }
        let bot_path = full(workspace, &b.bot_path);
        // Only this bot's playbook: a deployed bot never reads a local file.
        let pbs = BTreeMap::from([(pb_path.clone(), playbooks[&pb_path].clone())]);
        match load_bot_with(&texts[&b.bot_sha256], &bot_path, &pbs) {
            Ok(bot) if bot.playbook.sha256 == b.playbook_sha256 => bots.push(bot),
            Ok(bot) => diags.push(
                &bot_path,
                crate::playbook::yaml::Pos { line: 1, col: 1 },
                format!(
                    "deployed version {}: bot {} names playbook {} but version {} deployed it with {}",
                    d.version,
                    b.bot,
                    bot.playbook_path.display(),
                    d.version,
                    b.playbook_path
                ),
            ),
            Err(e) => diags.0.extend(e.0),
        }
    }
    if !diags.is_empty() {
        diags.sort();
        return Err(DeployError::Invalid(diags));
    }
    Ok((bots, texts))
}

/// One way the local folder differs from the deployment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LocalDifference {
    pub bot: String,
    /// `only_local`, `only_deployed`, `bot_differs`, `playbook_differs`,
    /// `invalid_locally`.
    pub what: String,
}

/// How the bots folder `dir` differs from `d` (by SHA-256 of each file).
/// A folder that does not exist does not differ: the machine has no copy.
pub fn local_differences(workspace: &Path, dir: &Path, d: &Deployment) -> Vec<LocalDifference> {
    if !dir.is_dir() {
        return Vec::new();
    }
    let (local, diags) = load_bots_dir(dir);
    let mut out = Vec::new();
    if !diags.is_empty() {
        out.push(LocalDifference {
            bot: String::new(),
            what: format!("invalid_locally ({} problem(s))", diags.len()),
        });
    }
    let deployed: BTreeMap<&str, &DeployedBot> =
        d.bots.iter().map(|b| (b.bot.as_str(), b)).collect();
    for b in &local {
        let Some(dep) = deployed.get(b.name.as_str()) else {
            out.push(LocalDifference {
                bot: b.name.clone(),
                what: "only_local".into(),
            });
            continue;
        };
        let bot_sha = std::fs::read(&b.path).map(|t| sha256_hex(&t)).ok();
        if bot_sha.as_deref() != Some(dep.bot_sha256.as_str())
            || rel(workspace, &b.path) != dep.bot_path
        {
            out.push(LocalDifference {
                bot: b.name.clone(),
                what: "bot_differs".into(),
            });
        }
        if b.playbook.sha256 != dep.playbook_sha256 {
            out.push(LocalDifference {
                bot: b.name.clone(),
                what: "playbook_differs".into(),
            });
        }
    }
    for name in deployed.keys() {
        if !local.iter().any(|b| b.name == *name) {
            out.push(LocalDifference {
                bot: name.to_string(),
                what: "only_deployed".into(),
            });
        }
    }
    out
}

/// The bot set a running serve holds.
#[derive(Default)]
struct Current {
    /// The deployed version in effect (`None`: the local folder).
    version: Option<i64>,
    entries: HashMap<String, DeployedBot>,
    bots: Vec<Bot>,
}

/// Where `clerk serve` gets its bots: the store's deployment if there is
/// one, else the local folder. Shared by the serve loop and its workers.
pub struct Source {
    recorder: Recorder,
    workspace: PathBuf,
    bots_dir: PathBuf,
    current: Mutex<Current>,
    /// One refresh at a time (workers may ask at once).
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("bots_dir", &self.bots_dir)
            .field("version", &self.version())
            .finish()
    }
}

/// Why serve cannot start with the bots it found.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The local folder (no deployment) or the deployment has problems.
    #[error("{} problem(s) in the bots", .0.len())]
    Invalid(Diagnostics),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl Source {
    /// Reads the bots to start with and says where they come from.
    pub async fn open(
        recorder: Recorder,
        workspace: &Path,
        bots_dir: &Path,
    ) -> Result<(Arc<Source>, Vec<Bot>), StartError> {
        let source = Arc::new(Source {
            recorder,
            workspace: workspace.to_path_buf(),
            bots_dir: bots_dir.to_path_buf(),
            current: Mutex::new(Current::default()),
            refreshing: tokio::sync::Mutex::new(()),
        });
        let latest = source
            .recorder
            .store()
            .latest_deploy_version()
            .await
            .map_err(anyhow::Error::from)?;
        let Some(v) = latest else {
            let (bots, diags) = load_bots_dir(bots_dir);
            if !diags.is_empty() {
                return Err(StartError::Invalid(diags));
            }
            tracing::info!(folder = %bots_dir.display(), "no deployed version in the store: running the bots folder (single-machine mode; `clerk deploy` to share one version)");
            source.lock().bots = bots.clone();
            return Ok((source, bots));
        };
        let bots = match source.install(v).await {
            Ok(b) => b,
            Err(DeployError::Invalid(d)) => return Err(StartError::Invalid(d)),
            Err(e) => return Err(StartError::Other(anyhow::anyhow!("{e:#}"))),
        };
        // Firings of bots removed while no serve was running are never
        // claimed (their bot is not in the set): skip them now.
        match source.recorder.store().runs_with_status("queued").await {
            Ok(queued) => {
                let gone: BTreeSet<String> = queued
                    .into_iter()
                    .filter_map(|r| r.bot)
                    .filter(|b| !bots.iter().any(|x| &x.name == b))
                    .collect();
                if !gone.is_empty() {
                    source.skip_queued(&gone, Some(v)).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot look for queued runs of removed bots"),
        }
        Ok((source, bots))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The deployed version in effect (`None`: the local folder).
    pub fn version(&self) -> Option<i64> {
        self.lock().version
    }

    /// The bots in effect.
    pub fn bots(&self) -> Vec<Bot> {
        self.lock().bots.clone()
    }

    /// Loads version `v`, makes it current, and says how the local folder
    /// differs from it (log and audit).
    async fn install(&self, v: i64) -> Result<Vec<Bot>, DeployError> {
        let store = self.recorder.store();
        let d = store
            .deployment(v)
            .await
            .map_err(anyhow::Error::from)?
            .ok_or(DeployError::NoSuchVersion(v))?;
        let (bots, _) = load_deployment(store, &self.workspace, &d).await?;
        let was = self.version();
        {
            let mut c = self.lock();
            c.version = Some(v);
            c.entries = d.bots.iter().map(|b| (b.bot.clone(), b.clone())).collect();
            c.bots = bots.clone();
        }
        tracing::info!(version = v, previous = ?was, bots = bots.len(), deployed_by = %d.deployed_by, "running deployed version {v} from the store");
        let diffs = local_differences(&self.workspace, &self.bots_dir, &d);
        if !diffs.is_empty() {
            let listed: Vec<String> = diffs
                .iter()
                .map(|x| format!("{} {}", x.bot, x.what).trim().to_string())
                .collect();
            tracing::warn!(
                version = v,
                folder = %self.bots_dir.display(),
                "the local bots folder differs from deployed version {v} ({}); running the deployed version, not the local files",
                listed.join(", ")
            );
            let event = NewEvent::new(
                "deploy.local_differs",
                &format!("serve@{}", crate::process::display_hostname()),
            )
            .target(format!("version {v}"))
            .outcome("deployed_version_used")
            .detail(json!({
                "version": v,
                "host": crate::process::display_hostname(),
                "folder": self.bots_dir.display().to_string(),
                "differences": diffs,
            }));
            if let Err(e) = self.recorder.record(event).await {
                tracing::warn!(error = %format!("{e:#}"), "cannot record that the local bots folder differs");
            }
        }
        Ok(bots)
    }

    /// If the store has a newer deployment than the one in effect, installs
    /// it and returns its bots.
    pub async fn refresh(&self) -> anyhow::Result<Option<Vec<Bot>>> {
        let _one = self.refreshing.lock().await;
        let latest = self.recorder.store().latest_deploy_version().await?;
        match latest {
            Some(v) if Some(v) != self.version() => match self.install(v).await {
                Ok(bots) => Ok(Some(bots)),
                Err(e) => Err(anyhow::anyhow!(
                    "cannot load deployed version {v}; keeping the bots in effect: {e:#}{}",
                    match &e {
                        DeployError::Invalid(d) => format!(
                            "\n{}",
                            d.0.iter()
                                .map(|x| x.to_string())
                                .collect::<Vec<_>>()
                                .join("\n")
                        ),
                        _ => String::new(),
                    }
                )),
            },
            _ => Ok(None),
        }
    }

    /// Keeps the bot set current while serve runs: `install` gets each new
    /// deployment's bots (also ones found by [`Source::for_run`]).
    /// Firings of bots a deployment removed that were queued ahead are
    /// `skipped` when it is installed, and once more a little later (a
    /// scheduler tick under way at the install may still have queued one).
    pub async fn follow(self: Arc<Self>, stop: CancellationToken, install: impl Fn(Vec<Bot>)) {
        let mut installed = self.version();
        let mut names: BTreeSet<String> = self.bots().into_iter().map(|b| b.name).collect();
        let mut recheck: Option<(tokio::time::Instant, BTreeSet<String>)> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FOLLOW_EVERY) => {}
                _ = stop.cancelled() => return,
            }
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot look for a new deployed version; retrying");
            }
            let now = self.version();
            if now != installed {
                let bots = self.bots();
                let new: BTreeSet<String> = bots.iter().map(|b| b.name.clone()).collect();
                install(bots);
                installed = now;
                let removed: BTreeSet<String> = names.difference(&new).cloned().collect();
                names = new;
                if !removed.is_empty() {
                    self.skip_queued(&removed, now).await;
                    recheck = Some((tokio::time::Instant::now() + RECHECK_AFTER, removed));
                }
            }
            if let Some((at, removed)) = &recheck
                && tokio::time::Instant::now() >= *at
            {
                self.skip_queued(removed, now).await;
                recheck = None;
            }
        }
    }

    /// Marks queued runs of `removed` bots `skipped` (with their events).
    async fn skip_queued(&self, removed: &BTreeSet<String>, version: Option<i64>) {
        let store = self.recorder.store();
        let queued = match store.runs_with_status("queued").await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for queued runs of removed bots");
                return;
            }
        };
        for run in queued {
            let Some(bot) = run.bot.as_ref().filter(|b| removed.contains(*b)) else {
                continue;
            };
            let reason = match version {
                Some(v) => format!("bot {bot} is not in deployed version {v}"),
                None => format!("bot {bot} was removed"),
            };
            let event = NewEvent::new("scheduler.skipped", bot)
                .run(run.id.as_str())
                .target(bot.as_str())
                .outcome("skipped")
                .detail(json!({ "bot": bot, "reason": reason, "version": version }));
            let change = RunChange {
                status: Some("skipped".into()),
                finished_at: Some(crate::store::time::now_micros()),
                error: Some(format!("skipped: {reason}")),
                ..Default::default()
            };
            match store
                .transition_run(&run.id, &["queued"], change, event)
                .await
            {
                Ok(_) => tracing::info!(run = %run.id, %bot, "queued firing skipped: {reason}"),
                Err(crate::store::StoreError::StateConflict { .. }) => {}
                Err(e) => tracing::warn!(run = %run.id, error = %e, "cannot skip the queued run"),
            }
        }
    }

    /// Right before a claimed run starts: the bot it must run (the newest
    /// deployment's, which is recorded on the run with a `run.deployment`
    /// event), or `None` when the newest deployment removed the bot (the run
    /// is then marked `skipped`). In the single-machine mode, `bot` itself.
    pub async fn for_run(&self, bot: Arc<Bot>, run: &RunRow) -> Option<Arc<Bot>> {
        if let Err(e) = self.refresh().await {
            tracing::warn!(run = %run.id, error = %format!("{e:#}"), "cannot check for a newer deployed version before the run");
        }
        let (version, entry, fresh) = {
            let c = self.lock();
            let Some(v) = c.version else {
                return Some(bot);
            };
            (
                v,
                c.entries.get(&bot.name).cloned(),
                c.bots.iter().find(|b| b.name == bot.name).cloned(),
            )
        };
        let store = self.recorder.store();
        let (Some(entry), Some(fresh)) = (entry, fresh) else {
            let reason = format!("bot {} is not in deployed version {version}", bot.name);
            tracing::warn!(run = %run.id, bot = %bot.name, version, "{reason}: the run is skipped");
            let event = NewEvent::new("scheduler.skipped", &bot.name)
                .run(run.id.as_str())
                .target(bot.name.as_str())
                .outcome("skipped")
                .detail(json!({ "bot": bot.name, "reason": reason, "version": version }));
            let change = RunChange {
                status: Some("skipped".into()),
                finished_at: Some(crate::store::time::now_micros()),
                error: Some(format!("skipped: {reason}")),
                ..Default::default()
            };
            if let Err(e) = store
                .transition_run(&run.id, &["running"], change, event)
                .await
            {
                tracing::error!(run = %run.id, error = %e, "cannot mark the run skipped");
            }
            return None;
        };
        let event = self.recorder.redact_event(
            NewEvent::new("run.deployment", &run.actor)
                .run(run.id.as_str())
                .target(bot.name.as_str())
                .detail(json!({
                    "bot": bot.name,
                    "version": version,
                    "bot_sha256": entry.bot_sha256,
                    "playbook": entry.playbook_path,
                    "playbook_sha256": entry.playbook_sha256,
                    "host": crate::process::display_hostname(),
                })),
        );
        let steps = serde_json::to_string(&fresh.playbook.step_digests()).unwrap_or_default();
        if let Err(e) = store
            .set_run_deploy_version(&run.id, version, (&fresh.playbook.sha256, &steps), event)
            .await
        {
            tracing::warn!(run = %run.id, error = %e, "cannot record the deployed version of the run");
        }
        Some(Arc::new(fresh))
    }

    /// SIGHUP: with a deployment the folder is not read; true if handled here.
    pub fn on_reload(&self) -> bool {
        match self.version() {
            Some(v) => {
                tracing::info!(
                    version = v,
                    "SIGHUP: the bots come from deployed version {v} in the store; the local folder is not read (deploy changes with `clerk deploy`)"
                );
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(bot: &str, sha: &str) -> DeployedBot {
        DeployedBot {
            bot: bot.into(),
            bot_path: format!("bots/{bot}.yaml"),
            bot_sha256: sha.into(),
            playbook_path: "playbooks/p.yaml".into(),
            playbook_sha256: "p".into(),
        }
    }

    #[test]
    fn compares_sets_by_bot_name() {
        let old = [entry("a", "1"), entry("b", "2"), entry("c", "3")];
        let new = [entry("a", "1"), entry("b", "9"), entry("d", "4")];
        let (added, removed, changed, unchanged) = compare(&old, &new);
        assert_eq!(added, ["d"]);
        assert_eq!(removed, ["c"]);
        assert_eq!(changed, ["b"]);
        assert_eq!(unchanged, ["a"]);
    }

    #[test]
    fn the_set_digest_ignores_order_but_not_content() {
        let a = [entry("a", "1"), entry("b", "2")];
        let b = [entry("b", "2"), entry("a", "1")];
        let c = [entry("b", "2"), entry("a", "X")];
        assert_eq!(set_sha256(&a), set_sha256(&b));
        assert_ne!(set_sha256(&a), set_sha256(&c));
    }

    #[test]
    fn collect_refuses_a_folder_with_problems_naming_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        std::fs::create_dir_all(ws.join("bots")).unwrap();
        std::fs::create_dir_all(ws.join("playbooks")).unwrap();
        std::fs::write(
            ws.join("playbooks/p.yaml"),
            "name: p\nsteps:\n  - log: hi\n  - nosuch.action: 1\n",
        )
        .unwrap();
        std::fs::write(
            ws.join("bots/b.yaml"),
            "name: b\nplaybook: ../playbooks/p.yaml\nschedule: [\"0 * * * *\"]\n",
        )
        .unwrap();
        let d = collect(ws, &ws.join("bots")).unwrap_err();
        let text =
            d.0.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n");
        assert!(text.contains("p.yaml:4:5:"), "{text}");
        std::fs::write(
            ws.join("playbooks/p.yaml"),
            "name: p\nsteps:\n  - log: hi\n",
        )
        .unwrap();
        let ok = collect(ws, &ws.join("bots")).unwrap();
        assert_eq!(ok.bots.len(), 1);
        assert_eq!(ok.bots[0].bot_path, "bots/b.yaml");
        assert_eq!(ok.bots[0].playbook_path, "playbooks/p.yaml");
        assert_eq!(ok.contents.len(), 2);
    }
}
