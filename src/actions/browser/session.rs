//! The run's browser: chromedriver started by clerk on a free port, one
//! headless Chromium session, and their cleanup.
//!
//! The session is a per-run [`Resource`], created by the first browser action
//! and closed by the engine when the run ends (success, failure, timeout,
//! cancellation). Orphans are prevented at three levels:
//! - chromedriver runs under a small `sh` guard that leads a new process
//!   group; Chromium and its helpers stay in that group, so one `killpg`
//!   ends them all;
//! - the guard waits on a pipe from clerk and kills its group when the pipe
//!   closes — which the kernel does however clerk ends, even by SIGKILL;
//! - dropping the [`Driver`] (also when the starting action is cancelled
//!   half-way) kills the group and any process still naming the run's
//!   private profile folder.
//!
//! With `browser.webdriver_url` (a Selenium Grid or another WebDriver
//! server) clerk starts no process; [`grid`] covers what a remote session
//! needs: the same DevTools preinstall of the resolver (through the Grid),
//! a record of the session so that the next clerk start closes it after a
//! `kill -9`, managed downloads and the capabilities of `clerk.yaml`.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BrowserError;
use crate::actions::{ActionContext, Resource, RunInfo};
use crate::config::BrowserConfig;

pub mod grid;

/// The slot of the session in the run's resources.
pub const KEY: &str = "browser";

/// How long chromedriver may take to answer `/status`. Generous: the first
/// start after boot on a loaded 2-core machine was seen to take over 20 s.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The guard (`sh -c`, leader of a new process group): chromedriver in the
/// background, then wait until clerk's pipe closes and kill the whole group
/// (chromedriver, Chromium, its helpers, the guard itself).
const GUARD_SCRIPT: &str = "\"$1\" --port=\"$2\" & read -r _ ; kill -s KILL 0";

/// Flags Chromium needs to run headless as root in a container, plus quiet defaults.
const CHROMIUM_FLAGS: &[&str] = &[
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-sync",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--password-store=basic",
    "--window-size=1366,900",
];

/// What browser actions hold on to while they work (cheap to clone).
#[derive(Clone)]
pub struct Handle {
    pub client: Client,
    /// Where Chromium saves downloads.
    pub downloads: PathBuf,
    /// How deep in frames the session is (to get back to the top).
    pub frame_depth: Arc<AtomicU32>,
    /// Frames entered for one action only (a locator matched inside a
    /// frame); left again after the action, or by the next step.
    pub auto_frames: Arc<AtomicU32>,
    /// The run's `browser.settings` (error patterns, HTTP errors, waits).
    pub settings: Arc<std::sync::Mutex<super::navigate::Settings>>,
    /// What a click that opened a dialog was about to do (the dialog step
    /// then waits for the navigation and checks its HTTP status).
    pub pending: Arc<std::sync::Mutex<Option<super::navigate::Before>>>,
    /// The Grid side of a session on a Selenium Grid (downloads come back
    /// through its managed-downloads API); `None` for a local browser.
    pub grid: Option<Arc<grid::Remote>>,
}

impl Handle {
    pub fn enter_frame(&self) {
        self.frame_depth.fetch_add(1, Ordering::SeqCst);
    }

    pub fn left_frames(&self, n: u32) {
        let _ = self
            .frame_depth
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                Some(d.saturating_sub(n))
            });
    }

    pub fn depth(&self) -> u32 {
        self.frame_depth.load(Ordering::SeqCst)
    }

    /// The run's settings (a copy).
    pub fn settings(&self) -> super::navigate::Settings {
        self.settings.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn set_pending(&self, before: Option<super::navigate::Before>) {
        if let Ok(mut p) = self.pending.lock() {
            *p = before;
        }
    }

    pub fn take_pending(&self) -> Option<super::navigate::Before> {
        self.pending.lock().ok().and_then(|mut p| p.take())
    }
}

/// Browser sessions open in this process (for `/metrics`).
pub static OPEN_SESSIONS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// The run's browser session (a [`Resource`]).
pub struct BrowserSession {
    handle: Handle,
    driver: Option<Driver>,
    /// The record of a remote session (removed once it is closed).
    record: Option<grid::Record>,
    /// An action failed since the last probe (see [`BrowserSession::needs_probe`]).
    suspect: bool,
    /// The last action that used this session ended well (through
    /// `step::finish`); cleared when the next one takes the session.
    clean: bool,
    /// The action (step path, attempt) that took the session last: its own
    /// later calls (an `open` that then waits for the page) need no probe.
    held_by: Option<(String, u32)>,
    last_used: Instant,
}

impl Resource for BrowserSession {
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let BrowserSession {
                handle,
                driver,
                record,
                ..
            } = *self;
            OPEN_SESSIONS.fetch_sub(1, Ordering::SeqCst);
            // A polite goodbye first, so Chromium can flush the profile and downloads.
            // A remote session's record stays when the goodbye fails: the next
            // clerk start tries again once this process is gone.
            let closed =
                match tokio::time::timeout(Duration::from_secs(5), handle.client.close()).await {
                    Ok(Ok(())) => {
                        tracing::debug!("browser session closed");
                        true
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("closing the browser session: {e}");
                        e.is_invalid_session_id()
                    }
                    Err(_) => {
                        tracing::warn!("the browser did not close within 5 s; killing it");
                        false
                    }
                };
            if closed && let Some(r) = record {
                r.remove();
            }
            drop(driver);
        })
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The run's browser, started on first use.
pub async fn handle(ctx: &ActionContext<'_>) -> Result<Handle, BrowserError> {
    let resources = ctx.resources;
    let mut slots = resources.lock().await;
    let mut dead = None;
    if let Some(s) = slots
        .get_mut(KEY)
        .and_then(|r| r.as_any_mut().downcast_mut::<BrowserSession>())
    {
        let me = (ctx.step.path.clone(), ctx.step.attempt);
        let again = s.held_by.as_ref() == Some(&me);
        let probe = if again { s.suspect } else { s.needs_probe() };
        // This action now holds the session: until it ends well, the next
        // one probes.
        s.clean = false;
        s.held_by = Some(me);
        if !probe {
            s.last_used = Instant::now();
            return Ok(s.handle.clone());
        }
        match s.check_alive().await {
            Ok(()) => {
                s.suspect = false;
                s.last_used = Instant::now();
                return Ok(s.handle.clone());
            }
            Err(reason) => dead = Some(reason),
        }
    }
    if let Some(reason) = &dead
        && let Some(old) = slots.remove(KEY)
    {
        // Kills what is left of it (chromedriver, Chromium, the profile).
        old.close().await;
        tracing::warn!("the browser session died ({reason}); starting a fresh one");
    }
    let downloads = ctx.run.artifacts_dir.join("downloads");
    let session = start(&ctx.config.browser, downloads, ctx.run).await?;
    let handle = session.handle.clone();
    slots.insert(KEY, Box::new(session));
    drop(slots);
    if let Some(reason) = dead {
        let event = crate::audit::NewEvent::new("browser.restarted", &ctx.run.actor)
            .run(ctx.run.id.as_str())
            .step(ctx.step.path.as_str(), ctx.step.name.as_deref())
            .outcome("ok")
            .detail(json!({ "reason": reason, "attempt": ctx.step.attempt }));
        if let Err(e) = ctx.recorder.record(event).await {
            return Err(BrowserError::permanent(format!(
                "cannot record the browser restart in the audit trail: {e:#}"
            )));
        }
    }
    Ok(handle)
}

/// How long a live session may take to say which window it is on.
const ALIVE_LIMIT: Duration = Duration::from_secs(5);

/// A session unused for this long is probed before its next use (a Grid
/// may have timed it out during a long `wait`; a local browser may have
/// been closed meanwhile).
const IDLE_PROBE: Duration = Duration::from_secs(10);

impl BrowserSession {
    /// A session is probed before an action (one round trip) unless the
    /// action before it ended well and not long ago: a probe per action was
    /// a third of a form record's round trips. A local session is probed
    /// whenever the previous action failed, was cut off (a step timeout
    /// drops it before it can say) or never said how it ended; a remote one
    /// only after a failure or a pause (through a Grid every round trip
    /// passes the router and the node). A session that died between two
    /// good actions is found by the failed action, and the next attempt (or
    /// item) gets a fresh session.
    fn needs_probe(&self) -> bool {
        let local_unsure = self.driver.is_some() && !self.clean;
        local_unsure || self.suspect || self.last_used.elapsed() > IDLE_PROBE
    }

    /// Whether chromedriver and Chromium still answer (a cheap WebDriver
    /// round trip), so that a dead session is replaced by a fresh one on the
    /// next attempt of a retried step or item instead of failing every later
    /// action.
    /// Every browser action probes (one loopback round trip): the engine does
    /// not tell the session that an action failed, and skipping probes would
    /// let items that fail fast (no retry delay) all fail on the dead session.
    async fn check_alive(&mut self) -> Result<(), String> {
        match tokio::time::timeout(ALIVE_LIMIT, self.handle.client.window()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(without_stacktrace(&e.to_string())),
            Err(_) => Err(format!("no answer within {} s", ALIVE_LIMIT.as_secs())),
        }
    }
}

/// Notes that a browser action ended well, so that the next one may skip
/// the probe (see [`BrowserSession::needs_probe`]).
pub async fn action_succeeded(ctx: &ActionContext<'_>) {
    let mut slots = ctx.resources.lock().await;
    if let Some(s) = slots
        .get_mut(KEY)
        .and_then(|r| r.as_any_mut().downcast_mut::<BrowserSession>())
        && !s.suspect
    {
        s.clean = true;
        s.held_by = None;
        s.last_used = Instant::now();
    }
}

/// The run's browser if one was started (for failure evidence). Called when
/// a browser action failed, so the session's next use checks it is alive.
pub async fn existing(ctx: &ActionContext<'_>) -> Option<Handle> {
    let mut slots = ctx.resources.lock().await;
    slots
        .get_mut(KEY)
        .and_then(|r| r.as_any_mut().downcast_mut::<BrowserSession>())
        .map(|s| {
            s.suspect = true;
            s.handle.clone()
        })
}

/// Starts chromedriver (unless `webdriver_url` is set) and opens a session.
pub async fn start(
    config: &BrowserConfig,
    downloads: PathBuf,
    run: &RunInfo,
) -> Result<BrowserSession, BrowserError> {
    std::fs::create_dir_all(&downloads).map_err(|e| {
        BrowserError::permanent(format!(
            "cannot create the download folder {}: {e}",
            downloads.display()
        ))
    })?;
    let (url, driver, server) = match &config.webdriver_url {
        Some(url) => {
            let url = grid::base_url(url);
            let server = grid::probe(&url).await;
            (url, None, Some(server))
        }
        None => {
            let driver = Driver::spawn(config).await?;
            (
                format!("http://127.0.0.1:{}", driver.port),
                Some(driver),
                None,
            )
        }
    };
    let profile = driver.as_ref().map(|d| d.profile_dir());
    let caps = capabilities(config, profile.as_deref(), &downloads, server, &run.id);
    let client = match tokio::time::timeout(
        START_LIMIT,
        ClientBuilder::native().capabilities(caps).connect(&url),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            // chromedriver explains a refused session itself ("no chrome binary at ...");
            // for anything else its log may say more.
            let (text, tail) = match &e {
                fantoccini::error::NewSessionError::SessionNotCreated(w) => {
                    (without_stacktrace(&w.message), String::new())
                }
                other => (
                    without_stacktrace(&other.to_string()),
                    driver.as_ref().map(Driver::log_tail).unwrap_or_default(),
                ),
            };
            return Err(BrowserError::permanent(format!(
                "cannot open a browser session at {url}: {text}{tail}"
            )));
        }
        Err(_) => {
            return Err(BrowserError::retryable(format!(
                "the browser did not start within {} s at {url}",
                START_LIMIT.as_secs()
            )));
        }
    };
    // A remote session is written down at once: if clerk is killed from now
    // on, the next clerk start closes it (see `grid::sweep`).
    let mut remote = None;
    let mut record = None;
    if let Some(server) = server {
        let sid = client.session_id().await.ok().flatten().unwrap_or_default();
        match grid::Record::write(&run.workspace, &url, &sid, &run.id) {
            Ok(r) => record = Some(r),
            Err(e) => tracing::warn!(
                "cannot record the remote browser session {sid} (a killed clerk would leave it \
                 open until the Grid times it out): {e:#}"
            ),
        }
        if server.grid {
            remote = Some(Arc::new(grid::Remote {
                url: url.clone(),
                session: sid.clone(),
                downloads: server.downloads,
            }));
        }
        tracing::info!(session = %sid, grid = server.grid, managed_downloads = server.downloads, "remote browser session opened");
    }
    let mut timeouts = fantoccini::wd::TimeoutConfiguration::default();
    timeouts.set_page_load(Some(Duration::from_secs(60)));
    timeouts.set_implicit(Some(Duration::ZERO));
    timeouts.set_script(Some(Duration::from_secs(30)));
    if let Err(e) = client.update_timeouts(timeouts).await {
        tracing::debug!("cannot set WebDriver timeouts: {e}");
    }
    // Headless Chromium needs to be told where downloads go (prefs alone are
    // not enough). On a Grid the node picks the folder and clerk fetches the
    // files through the Grid; a plain remote server keeps the local folder.
    if remote.is_none() {
        let cmd = json!({
            "cmd": "Browser.setDownloadBehavior",
            "params": {
                "behavior": "allow",
                "downloadPath": downloads.display().to_string(),
                "eventsEnabled": false
            }
        });
        if let Err(e) = grid::cdp(&client, cmd).await {
            tracing::debug!("cannot set the download folder over CDP: {e}");
        }
    }
    // The element resolver in every new document: element actions then send
    // a one-line script instead of the whole resolver. A Grid forwards this
    // DevTools call to its node's chromedriver; a browser without DevTools
    // gets the resolver by script, once per document (see `resolve::call`).
    let cmd = json!({
        "cmd": "Page.addScriptToEvaluateOnNewDocument",
        "params": { "source": super::resolve::INSTALL }
    });
    if let Err(e) = grid::cdp(&client, cmd).await {
        tracing::info!(
            "DevTools is not reachable through {url} ({e}); the element resolver is installed \
             by script in each page instead"
        );
    }
    // What the browser itself says it is: `chrome-headless-shell` or `chrome`.
    let caps = client.capabilities();
    let cap = |k: &str| {
        caps.and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    tracing::info!(
        webdriver = %url,
        browser = %cap("browserName"),
        version = %cap("browserVersion"),
        "browser session started{}",
        if config.headless { " (headless)" } else { "" }
    );
    OPEN_SESSIONS.fetch_add(1, Ordering::SeqCst);
    Ok(BrowserSession {
        handle: Handle {
            client,
            downloads,
            frame_depth: Arc::new(AtomicU32::new(0)),
            auto_frames: Arc::new(AtomicU32::new(0)),
            settings: Arc::default(),
            pending: Arc::default(),
            grid: remote,
        },
        driver,
        record,
        suspect: false,
        clean: false,
        held_by: None,
        last_used: Instant::now(),
    })
}

/// What clerk asks the WebDriver server for: Chromium with clerk's flags,
/// then `browser.capabilities` from clerk.yaml merged over it. `server` is
/// `Some` for a remote server: there the node owns the Chromium binary, the
/// profile and (on a Grid) the download folder.
fn capabilities(
    config: &BrowserConfig,
    profile: Option<&Path>,
    downloads: &Path,
    server: Option<grid::ServerInfo>,
    run: &str,
) -> serde_json::Map<String, Value> {
    // A local Chromium found on PATH (the headless shell when it is there);
    // a remote node knows its own (a path here means nothing there), unless
    // clerk.yaml names one.
    let binary = match server {
        None => chromium_binary(config),
        Some(_) => config.chromium.clone(),
    };
    let shell = binary.as_deref().is_some_and(is_headless_shell);
    let binary = match (binary, profile.and_then(Path::parent)) {
        (Some(bin), Some(root)) if shell && server.is_none() => {
            Some(shell_launcher(root, &bin).unwrap_or(bin))
        }
        (bin, _) => bin,
    };
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
    // The shell is headless by nature and knows no `--headless=new`.
    if config.headless && !shell {
        args.push("--headless=new".into());
    }
    if let Some(p) = profile {
        args.push(format!("--user-data-dir={}", p.display()));
    }
    let grid = server.is_some_and(|s| s.grid);
    let mut prefs = json!({
        "safebrowsing.enabled": false,
        "credentials_enable_service": false,
        "profile.password_manager_enabled": false
    });
    if !grid {
        prefs["download.default_directory"] = json!(downloads.display().to_string());
        prefs["download.prompt_for_download"] = json!(false);
        prefs["download.directory_upgrade"] = json!(true);
    }
    let mut chrome = json!({ "args": args, "prefs": prefs });
    if let Some(bin) = binary {
        chrome["binary"] = json!(bin);
    }
    let mut caps = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        // A click that opens confirm() must not fail; `browser.dialog` handles it.
        "unhandledPromptBehavior": "ignore",
        "goog:chromeOptions": chrome,
    });
    if let Some(s) = server.filter(|s| s.grid) {
        // Shown in the Grid's UI and /status: which run holds the slot.
        caps["se:name"] = json!(format!("clerk run {run}"));
        if s.downloads {
            caps["se:downloadsEnabled"] = json!(true);
        }
    }
    if !config.capabilities.is_empty() {
        grid::merge(&mut caps, &Value::Object(config.capabilities.clone()));
    }
    match caps {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Chromium's headless shell: Debian's package `chromium-headless-shell`,
/// Chrome for Testing's `chrome-headless-shell`.
const HEADLESS_SHELLS: &[&str] = &["chromium-headless-shell", "chrome-headless-shell"];

/// Where Debian's package puts the headless shell's binary.
const DEBIAN_HEADLESS_SHELL: &str = "/usr/lib/chromium/chromium-headless-shell";

/// The browser a local session starts: `browser.chromium` if set; for a
/// headless run the headless shell when it is installed (it starts and loads
/// pages about twice as fast as the full browser in `--headless=new`, which
/// is what Playwright picks too), unless `headless_shell: false`; else the
/// first Chromium on PATH.
fn chromium_binary(config: &BrowserConfig) -> Option<String> {
    if let Some(b) = &config.chromium {
        return Some(b.clone());
    }
    if config.headless && config.headless_shell {
        // Debian's /usr/bin/chromium-headless-shell is a shell script that
        // runs this binary without `exec`: started through it, the browser's
        // main process would be its child, not the process chromedriver
        // started. The binary itself, when it is there.
        let debian = Path::new(DEBIAN_HEADLESS_SHELL);
        if debian.is_file() {
            return Some(DEBIAN_HEADLESS_SHELL.to_string());
        }
        if let Some(p) = HEADLESS_SHELLS.iter().find_map(|name| which(name)) {
            return Some(p.display().to_string());
        }
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| which(name))
        .map(|p| p.display().to_string())
}

fn is_headless_shell(binary: &str) -> bool {
    Path::new(binary)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains("headless-shell"))
}

/// The headless shell opens no page unless its command line names one, and
/// chromedriver names none but needs a page to attach to ("unable to
/// discover open pages"): a launcher in the session's private folder starts
/// the shell on `about:blank`. `None` if it cannot be written (then the shell
/// is started as it is, and chromedriver's refusal explains itself).
fn shell_launcher(root: &Path, shell: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = root.join("headless-shell");
    // Single quotes keep any path literal; a quote inside becomes '\''.
    let quoted = format!("'{}'", shell.replace('\'', r"'\''"));
    let script = format!("#!/bin/sh\nexec {quoted} \"$@\" about:blank\n");
    std::fs::write(&path, script).ok()?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).ok()?;
    Some(path.display().to_string())
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A WebDriver message on one line, without chromedriver's stack trace.
fn without_stacktrace(s: &str) -> String {
    s.lines()
        .take_while(|l| {
            !l.trim_start().starts_with("Stacktrace") && !l.trim_start().starts_with("#0 ")
        })
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// chromedriver and everything it starts, in one process group.
pub struct Driver {
    guard: Option<Child>,
    /// Held open; the guard kills the group when it closes.
    pipe: Option<ChildStdin>,
    pgid: i32,
    pub port: u16,
    /// Private folder: the Chromium profile and chromedriver's log.
    root: Option<tempfile::TempDir>,
}

impl Driver {
    async fn spawn(config: &BrowserConfig) -> Result<Driver, BrowserError> {
        let binary = match &config.chromedriver {
            Some(b) => PathBuf::from(b),
            None => which("chromedriver").ok_or_else(|| {
                BrowserError::permanent(
                    "chromedriver was not found on PATH; install the Debian packages `chromium` \
                     and `chromium-driver`, or set `browser.chromedriver` (or `browser.webdriver_url`) \
                     in clerk.yaml",
                )
            })?,
        };
        if !binary.is_file() {
            return Err(BrowserError::permanent(format!(
                "chromedriver {} does not exist (check `browser.chromedriver` in clerk.yaml)",
                binary.display()
            )));
        }
        let mut last_error = String::new();
        // The port is free when chosen but another process may take it first:
        // when chromedriver exits at once, try another port.
        for _ in 0..3 {
            match Driver::try_spawn(&binary).await {
                Ok(d) => return Ok(d),
                Err((exited, e)) => {
                    last_error = e;
                    if !exited {
                        break;
                    }
                }
            }
        }
        Err(BrowserError::permanent(format!(
            "cannot start {}: {last_error}",
            binary.display()
        )))
    }

    /// Errors say whether chromedriver exited (worth another port) or hung.
    async fn try_spawn(binary: &Path) -> Result<Driver, (bool, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| (false, format!("no free port: {e}")))?;
        let root = tempfile::Builder::new()
            .prefix("clerk-browser-")
            .tempdir()
            .map_err(|e| (false, format!("cannot create a profile folder: {e}")))?;
        std::fs::create_dir_all(root.path().join("profile"))
            .map_err(|e| (false, format!("cannot create a profile folder: {e}")))?;
        // A run killed with SIGKILL leaves this folder; the next clerk removes it.
        crate::process::write_owner(root.path())
            .map_err(|e| (false, format!("cannot create a profile folder: {e}")))?;
        let log_path = root.path().join("chromedriver.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| (false, format!("cannot create its log: {e}")))?;
        let log2 = log
            .try_clone()
            .map_err(|e| (false, format!("cannot create its log: {e}")))?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("clerk-browser-guard")
            .arg(binary)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut guard = cmd
            .spawn()
            .map_err(|e| (false, format!("cannot run /bin/sh: {e}")))?;
        let pipe = guard.stdin.take();
        let pgid = guard.id() as i32;
        let mut driver = Driver {
            guard: Some(guard),
            pipe,
            pgid,
            port,
            root: Some(root),
        };
        let started = Instant::now();
        loop {
            if let Ok(reply) = http(port, "GET", "/status", None).await
                && reply.contains("\"ready\":true")
            {
                return Ok(driver);
            }
            if let Some(g) = driver.guard.as_mut()
                && let Ok(Some(status)) = g.try_wait()
            {
                return Err((true, format!("it exited ({status}){}", driver.log_tail())));
            }
            if started.elapsed() > START_LIMIT {
                return Err((
                    false,
                    format!(
                        "it did not answer on port {port} within {} s{}",
                        START_LIMIT.as_secs(),
                        driver.log_tail()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn profile_dir(&self) -> PathBuf {
        self.root
            .as_ref()
            .map(|r| r.path().join("profile"))
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let Some(root) = &self.root else {
            return String::new();
        };
        let text =
            std::fs::read_to_string(root.path().join("chromedriver.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        if lines.is_empty() {
            String::new()
        } else {
            let mut l = lines;
            l.reverse();
            format!(" — chromedriver says: {}", l.join(" | "))
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // SAFETY: killpg only sends a signal; pgid is the guard's own group,
        // created for this driver and still reserved while the guard is unreaped.
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
        if let Some(mut g) = self.guard.take() {
            let _ = g.wait();
        }
        // SIGKILL is delivered asynchronously: wait (briefly) until the group is empty,
        // so that "the run is over" also means "its browser is gone".
        for _ in 0..100 {
            if !group_alive(self.pgid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(self.pipe.take());
        if let Some(root) = self.root.take() {
            // Anything that left the group but still uses our profile goes too.
            kill_processes_naming(root.path());
            // Chromium may still be writing for a moment after its death.
            for _ in 0..5 {
                if std::fs::remove_dir_all(root.path()).is_ok() || !root.path().exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// True while a live (non-zombie) process is in process group `pgid`.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces, so split after ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z")
            && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
    })
}

/// Kills every process whose command line contains `marker` (the run's
/// private profile path, so nothing else can match).
pub fn kill_processes_naming(marker: &Path) {
    let marker = marker.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&marker) {
            // SAFETY: sends a signal to a process we identified by our own unique path.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// A tiny HTTP/1.1 (connection: close) exchange with chromedriver on loopback (its `/status`
/// and the CDP bridge), without pulling in an HTTP client crate.
async fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> std::io::Result<String> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        // chromedriver keeps the connection open despite `Connection: close`:
        // read up to the end of the body its Content-Length announces.
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if out.len() >= end + 4 + length {
                    break;
                }
            }
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webdriver_messages_lose_their_stack_trace() {
        let m = "session not created\nfrom unknown error: no chrome binary at /x\nStacktrace:\n#0 0x55 <unknown>";
        assert_eq!(
            without_stacktrace(m),
            "session not created; from unknown error: no chrome binary at /x"
        );
    }

    #[test]
    fn process_groups_are_seen_in_proc() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        assert!(group_alive(own));
        assert!(!group_alive(i32::MAX - 7));
    }

    #[test]
    fn a_guarded_driver_takes_its_whole_group_down() {
        // A stand-in "chromedriver" that starts a child of its own and never answers.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-driver");
        std::fs::write(&fake, "#!/bin/sh\nsleep 300 &\nsleep 300\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("guard")
            .arg(&fake)
            .arg("1")
            .stdin(Stdio::piped());
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut guard = cmd.spawn().unwrap();
        let pgid = guard.id() as i32;
        std::thread::sleep(Duration::from_millis(200));
        assert!(group_alive(pgid));
        // Closing the pipe (what the kernel does when clerk dies) ends the group.
        drop(guard.stdin.take());
        let _ = guard.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_alive(pgid) {
            assert!(Instant::now() < deadline, "the group survived its guard");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
