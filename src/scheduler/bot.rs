//! Bot files (`bots/*.yaml`): the model and its loading with source
//! positions, so that `clerk validate` and `clerk serve` report every problem
//! as `path:line:col: message`.
//!
//! Loading is pure apart from reading the bot file and its playbook: nothing
//! is run, nothing touches the store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde_json::Value as Json;

use super::schedule::{CronSchedule, parse_timezone};
use crate::engine::{GivenInput, resolve_inputs};
use crate::fsutil;
use crate::playbook::checks::{self, suggest};
use crate::playbook::yaml::{self, Node, Pos, Value};
use crate::playbook::{Diagnostics, Playbook};

/// What to do with a firing while the bot's previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Do not run it: the firing becomes a `skipped` run and a `scheduler.skipped` event.
    Skip,
    /// Run it after the previous run ends.
    Queue,
    /// Run it at once, next to the previous run.
    Allow,
}

impl Overlap {
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Allow => "allow",
        }
    }
}

/// What to do with firings missed while no scheduler was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Skip them all (each recorded as `scheduler.skipped`).
    None,
    /// Run the most recent one once.
    Latest,
    /// Run every one, at most `catch_up_limit` (the most recent).
    All,
}

impl CatchUp {
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }
}

/// What `clerk serve` does, when it starts, with a run of this bot that an
/// earlier serve left unfinished (crash, `kill -9`, power cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInterrupt {
    /// Continue it in a new run of the same lineage: done items are skipped,
    /// an item that was in progress is verified (or marked in doubt).
    Resume,
    /// Start the job again from the top, still in the same lineage (so mails
    /// already sent and `once:` steps are not repeated).
    Retry,
    /// Leave it `interrupted` for a person (`clerk runs resume` continues it).
    Fail,
}

impl OnInterrupt {
    pub fn as_str(self) -> &'static str {
        match self {
            OnInterrupt::Resume => "resume",
            OnInterrupt::Retry => "retry",
            OnInterrupt::Fail => "fail",
        }
    }
}

/// Retry of a failed (or timed-out) run: `attempts` in all, `delay` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotRetry {
    pub attempts: u32,
    pub delay: Duration,
}

/// A loaded, checked bot.
#[derive(Debug, Clone)]
pub struct Bot {
    pub name: String,
    pub description: Option<String>,
    /// The bot file.
    pub path: PathBuf,
    /// The playbook file (resolved against the bot file's folder).
    pub playbook_path: PathBuf,
    pub playbook: Arc<Playbook>,
    pub schedule: Vec<CronSchedule>,
    /// The inputs as written in the bot file (defaults are filled in per run).
    pub inputs: serde_json::Map<String, Json>,
    pub enabled: bool,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub catch_up_limit: usize,
    pub on_interrupt: OnInterrupt,
    pub max_runtime: Option<Duration>,
    /// How late a queued firing may still start; later it is `expired`.
    /// `None`: until the bot's next firing (the schedule's period).
    pub max_delay: Option<Duration>,
    pub retry: Option<BotRetry>,
    pub notify_on_failure: Vec<String>,
    pub exclude_dates: BTreeSet<NaiveDate>,
    /// `trigger:` — run once per new message in a mailbox (besides or instead of `schedule`).
    pub trigger: Option<super::trigger::MailTrigger>,
    /// `runs_on: [vpn]` — only workers started with every one of these
    /// labels (`clerk serve --labels vpn`) claim its runs; normalised.
    pub runs_on: Vec<String>,
}

impl Bot {
    /// The first firing strictly after `after` over all schedule entries,
    /// leaving out excluded dates (in each entry's time zone).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.schedule
            .iter()
            .filter_map(|s| {
                let mut t = after;
                // Excluded dates can hide many firings in a row; bounded.
                for _ in 0..10_000 {
                    let next = s.next_after(t)?;
                    let day = next.with_timezone(&s.timezone).date_naive();
                    if !self.exclude_dates.contains(&day) {
                        return Some(next);
                    }
                    t = next;
                }
                None
            })
            .min()
    }

    /// The next `n` firings after `after`.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// The time zone to show firings in (the first entry's).
    pub fn display_tz(&self) -> Tz {
        self.schedule.first().map_or(chrono_tz::UTC, |s| s.timezone)
    }

    /// The bot's inputs with the playbook's defaults filled in.
    pub fn run_inputs(
        &self,
        overrides: &[(String, GivenInput)],
    ) -> Result<serde_json::Map<String, Json>, String> {
        let mut given: Vec<(String, GivenInput)> = self
            .inputs
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == *k))
            .map(|(k, v)| (k.clone(), GivenInput::Json(v.clone())))
            .collect();
        given.extend(overrides.iter().cloned());
        resolve_inputs(&self.playbook, &given)
    }

    /// The playbook path as recorded on runs: relative to the workspace when inside it.
    pub fn playbook_label(&self, workspace: &Path) -> String {
        self.playbook_path
            .strip_prefix(workspace)
            .unwrap_or(&self.playbook_path)
            .display()
            .to_string()
    }
}

const BOT_KEYS: &[&str] = &[
    "name",
    "description",
    "playbook",
    "schedule",
    "inputs",
    "enabled",
    "overlap",
    "catch_up",
    "catch_up_limit",
    "on_interrupt",
    "max_runtime",
    "max_delay",
    "retry",
    "notify",
    "exclude_dates",
    "trigger",
    "runs_on",
];
const SCHEDULE_KEYS: &[&str] = &["cron", "timezone"];
const RETRY_KEYS: &[&str] = &["attempts", "delay"];
const NOTIFY_KEYS: &[&str] = &["on_failure"];

/// Reads and checks a bot file. `workspace` is where relative paths in
/// messages are shown from.
pub fn load_bot_file(path: &Path) -> Result<Bot, Diagnostics> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let mut d = Diagnostics::default();
            d.push(
                path,
                Pos { line: 1, col: 1 },
                format!("cannot read the bot file: {e}"),
            );
            return Err(d);
        }
    };
    load_bot_str(&text, path)
}

/// Checks a bot given as text; `path` locates the playbook and is used in messages.
pub fn load_bot_str(text: &str, path: &Path) -> Result<Bot, Diagnostics> {
    load_bot_cached(text, path, &mut PlaybookCache::new())
}

/// Checks a bot given as text whose playbook is given too, by its full path
/// (a deployed version, `scheduler::deployed`): a playbook in `playbooks` is
/// never read from disk.
pub fn load_bot_with(
    text: &str,
    path: &Path,
    playbooks: &BTreeMap<PathBuf, Arc<Playbook>>,
) -> Result<Bot, Diagnostics> {
    let mut cache: PlaybookCache = playbooks
        .iter()
        .map(|(k, v)| (k.clone(), Ok(v.clone())))
        .collect();
    load_bot_cached(text, path, &mut cache)
}

/// Playbooks already loaded, by path: bots sharing a playbook share one copy.
type PlaybookCache = BTreeMap<PathBuf, Result<Arc<Playbook>, Diagnostics>>;

fn load_bot_cached(text: &str, path: &Path, cache: &mut PlaybookCache) -> Result<Bot, Diagnostics> {
    let mut l = BotLoader {
        path,
        diags: Diagnostics::default(),
        cache,
    };
    let root = match yaml::parse(text) {
        Ok(r) => r,
        Err(e) => {
            l.err(e.pos, format!("invalid YAML: {}", e.message));
            return Err(l.diags);
        }
    };
    let bot = l.bot(&root);
    l.diags.sort();
    match bot {
        Some(b) if l.diags.is_empty() => Ok(b),
        _ => {
            if l.diags.is_empty() {
                l.err(root.pos, "the bot could not be loaded");
            }
            Err(l.diags)
        }
    }
}

/// Loads every `*.yaml` / `*.yml` bot in `dir` (not recursive). All problems
/// of all files are reported, plus duplicate bot names.
pub fn load_bots_dir(dir: &Path) -> (Vec<Bot>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"))
            })
            .collect(),
        Err(e) => {
            diags.push(
                dir,
                Pos { line: 1, col: 1 },
                format!("cannot read the bots folder: {e}"),
            );
            return (Vec::new(), diags);
        }
    };
    files.sort();
    let mut bots: Vec<Bot> = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut cache = PlaybookCache::new();
    for f in files {
        let loaded = match std::fs::read_to_string(&f) {
            Ok(text) => load_bot_cached(&text, &f, &mut cache),
            Err(e) => {
                let mut d = Diagnostics::default();
                d.push(
                    &f,
                    Pos { line: 1, col: 1 },
                    format!("cannot read the bot file: {e}"),
                );
                Err(d)
            }
        };
        match loaded {
            Ok(b) => {
                if let Some(first) = seen.get(&b.name) {
                    diags.push(
                        &f,
                        Pos { line: 1, col: 1 },
                        format!(
                            "bot name `{}` is already used by {}",
                            b.name,
                            first.display()
                        ),
                    );
                    continue;
                }
                seen.insert(b.name.clone(), f.clone());
                bots.push(b);
            }
            Err(d) => diags.0.extend(d.0),
        }
    }
    diags.sort();
    (bots, diags)
}

struct BotLoader<'a> {
    path: &'a Path,
    diags: Diagnostics,
    cache: &'a mut PlaybookCache,
}

impl BotLoader<'_> {
    fn err(&mut self, pos: Pos, message: impl Into<String>) {
        self.diags.push(self.path, pos, message);
    }

    fn unknown_keys(&mut self, node: &Node, allowed: &[&str], what: &str) {
        checks::unknown_keys(&mut self.diags, self.path, node, allowed, what);
    }

    /// A string that must not be blank (a bot's name, playbook, time zone...).
    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let s = checks::string(&mut self.diags, self.path, node, what)?;
        if s.trim().is_empty() {
            self.err(node.pos, format!("`{what}` must not be empty"));
            return None;
        }
        Some(s)
    }

    fn boolean(&mut self, node: Option<&Node>, what: &str, default: bool) -> bool {
        match node.map(|n| (&n.value, n.pos)) {
            None => default,
            Some((Value::Bool(b), _)) => *b,
            Some((_, pos)) => {
                self.err(pos, format!("`{what}` must be true or false"));
                default
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        checks::duration(&mut self.diags, self.path, node, what, "`30s` or `2h`")
    }

    fn choice<T: Copy>(
        &mut self,
        node: Option<&Node>,
        what: &str,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some(node) = node else { return default };
        let text = node.as_str().unwrap_or_default();
        if let Some((_, v)) = options.iter().find(|(n, _)| *n == text) {
            return *v;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let hint = suggest(text, names.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        self.err(
            node.pos,
            format!(
                "`{what}` must be one of {}, found `{}`{hint}",
                names.join(", "),
                node.key_text()
            ),
        );
        default
    }

    fn bot(&mut self, root: &Node) -> Option<Bot> {
        if root.as_map().is_none() {
            self.err(
                root.pos,
                format!(
                    "a bot must be a map with `name`, `playbook` and `schedule`, found {}",
                    root.kind_name()
                ),
            );
            return None;
        }
        self.unknown_keys(root, BOT_KEYS, "the bot");
        let name = match root.get("name") {
            Some(n) => self.string(n, "name").and_then(|s| {
                if s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    Some(s)
                } else {
                    self.err(
                        n.pos,
                        format!("bot name `{s}` may only use letters, digits, `-`, `_` and `.`"),
                    );
                    None
                }
            }),
            None => {
                self.err(root.pos, "missing `name`");
                None
            }
        };
        let description = root
            .get("description")
            .and_then(|d| self.string(d, "description"));
        let trigger = root
            .get("trigger")
            .and_then(|n| super::trigger::parse_node(&mut self.diags, self.path, n));
        let schedule = match root.get("schedule") {
            Some(s) => self.schedule(s),
            None if root.get("trigger").is_some() => Vec::new(),
            None => {
                self.err(root.pos, "missing `schedule`");
                Vec::new()
            }
        };
        let exclude_dates = root
            .get("exclude_dates")
            .map(|n| self.exclude_dates(n))
            .unwrap_or_default();
        let enabled = self.boolean(root.get("enabled"), "enabled", true);
        let overlap = self.choice(
            root.get("overlap"),
            "overlap",
            &[
                ("skip", Overlap::Skip),
                ("queue", Overlap::Queue),
                ("allow", Overlap::Allow),
            ],
            Overlap::Skip,
        );
        let catch_up = self.choice(
            root.get("catch_up"),
            "catch_up",
            &[
                ("none", CatchUp::None),
                ("latest", CatchUp::Latest),
                ("all", CatchUp::All),
            ],
            CatchUp::None,
        );
        let on_interrupt = self.choice(
            root.get("on_interrupt"),
            "on_interrupt",
            &[
                ("resume", OnInterrupt::Resume),
                ("retry", OnInterrupt::Retry),
                ("fail", OnInterrupt::Fail),
            ],
            OnInterrupt::Resume,
        );
        let catch_up_limit = match root.get("catch_up_limit") {
            None => 10,
            Some(n) => match n.value {
                Value::Int(i) if (1..=10_000).contains(&i) => i as usize,
                _ => {
                    self.err(
                        n.pos,
                        "`catch_up_limit` must be a whole number from 1 to 10000",
                    );
                    10
                }
            },
        };
        let max_runtime = root
            .get("max_runtime")
            .and_then(|n| self.duration(n, "max_runtime"));
        if let (Some(d), Some(n)) = (max_runtime, root.get("max_runtime"))
            && d.is_zero()
        {
            self.err(n.pos, "`max_runtime` must be longer than 0s");
        }
        let max_delay = root
            .get("max_delay")
            .and_then(|n| self.duration(n, "max_delay"));
        if let (Some(d), Some(n)) = (max_delay, root.get("max_delay"))
            && d.is_zero()
        {
            self.err(n.pos, "`max_delay` must be longer than 0s");
        }
        let retry = root.get("retry").and_then(|n| self.retry(n));
        let runs_on = root
            .get("runs_on")
            .map(|n| self.runs_on(n))
            .unwrap_or_default();
        let notify_on_failure = root
            .get("notify")
            .map(|n| self.notify(n))
            .unwrap_or_default();

        let playbook = match root.get("playbook") {
            Some(p) => self.string(p, "playbook").and_then(|rel| {
                let base = self.path.parent().unwrap_or(Path::new("."));
                let full = fsutil::normalize(&base.join(&rel));
                if !self.cache.contains_key(&full) && !full.is_file() {
                    self.err(
                        p.pos,
                        format!(
                            "playbook `{rel}` not found (looked for {}; paths are relative to the bot file)",
                            full.display()
                        ),
                    );
                    return None;
                }
                let loaded = self
                    .cache
                    .entry(full.clone())
                    .or_insert_with(|| crate::engine::load_playbook(&full).map(Arc::new))
                    .clone();
                match loaded {
                    Ok(pb) => Some((full, pb, p.pos)),
                    Err(d) => {
                        self.err(
                            p.pos,
                            format!(
                                "playbook `{rel}` has {} problem(s) (listed below)",
                                d.len()
                            ),
                        );
                        self.diags.0.extend(d.0);
                        None
                    }
                }
            }),
            None => {
                self.err(root.pos, "missing `playbook`");
                None
            }
        };
        let inputs = match (&playbook, root.get("inputs")) {
            (Some((_, pb, pb_pos)), inputs) => self.inputs(pb, inputs, *pb_pos),
            (None, _) => serde_json::Map::new(),
        };
        let (playbook_path, playbook, pb_pos) = playbook?;
        if let Some(why) = trigger
            .as_ref()
            .and_then(|_| super::trigger::check_playbook(&playbook))
        {
            self.err(pb_pos, why);
        }
        if schedule.is_empty() && trigger.is_none() {
            return None;
        }
        Some(Bot {
            name: name?,
            description,
            path: self.path.to_path_buf(),
            playbook_path,
            playbook,
            schedule,
            inputs,
            enabled,
            overlap,
            catch_up,
            catch_up_limit,
            on_interrupt,
            max_runtime,
            max_delay,
            retry,
            notify_on_failure,
            exclude_dates,
            trigger,
            runs_on,
        })
    }

    /// `runs_on: [vpn, grid-eu]` (or one label as text): worker labels.
    fn runs_on(&mut self, node: &Node) -> Vec<String> {
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Str(_) => vec![node],
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "`runs_on` must be a list of worker labels like [vpn], found {}",
                        node.kind_name()
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items {
            let Some(text) = item.as_str() else {
                self.err(
                    item.pos,
                    format!("a `runs_on` label must be text, found {}", item.kind_name()),
                );
                continue;
            };
            match crate::store::workers::normalize_labels(&[text]) {
                Ok(l) if l.is_empty() => self.err(item.pos, "a `runs_on` label must not be empty"),
                Ok(l) => out.extend(l),
                Err(e) => self.err(item.pos, format!("`runs_on`: {e}")),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn schedule(&mut self, node: &Node) -> Vec<CronSchedule> {
        let entries: Vec<&Node> = match &node.value {
            Value::Seq(items) if !items.is_empty() => items.iter().collect(),
            Value::Seq(_) => {
                self.err(node.pos, "`schedule` must have at least one entry");
                return Vec::new();
            }
            Value::Map(_) | Value::Str(_) => vec![node],
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "`schedule` must be a list of {{ cron, timezone }} entries, found {}",
                        node.kind_name()
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for e in entries {
            // `- "0 2 * * *"` is shorthand for `- cron: "0 2 * * *"` in UTC.
            let (cron_node, tz_node) = match &e.value {
                Value::Str(_) => (Some(e), None),
                Value::Map(_) => {
                    self.unknown_keys(e, SCHEDULE_KEYS, "a schedule entry");
                    if e.get("cron").is_none() {
                        self.err(e.pos, "schedule entry is missing `cron`");
                    }
                    (e.get("cron"), e.get("timezone"))
                }
                _ => {
                    self.err(
                        e.pos,
                        format!(
                            "a schedule entry must be a map like {{ cron: \"30 2 * * *\", timezone: Europe/Brussels }}, found {}",
                            e.kind_name()
                        ),
                    );
                    continue;
                }
            };
            let tz = match tz_node {
                None => Some(chrono_tz::UTC),
                Some(t) => match self.string(t, "timezone") {
                    Some(name) => match parse_timezone(&name) {
                        Ok(tz) => Some(tz),
                        Err(msg) => {
                            self.err(t.pos, msg);
                            None
                        }
                    },
                    None => None,
                },
            };
            let Some(c) = cron_node else { continue };
            let Some(expr) = self.string(c, "cron") else {
                continue;
            };
            match CronSchedule::parse(&expr, tz.unwrap_or(chrono_tz::UTC)) {
                Ok(s) if tz.is_some() => out.push(s),
                Ok(_) => {}
                Err(why) => self.err(c.pos, format!("invalid cron expression `{expr}`: {why}")),
            }
        }
        out
    }

    fn exclude_dates(&mut self, node: &Node) -> BTreeSet<NaiveDate> {
        let mut out = BTreeSet::new();
        let Some(items) = node.as_seq() else {
            self.err(
                node.pos,
                format!(
                    "`exclude_dates` must be a list of dates like 2026-12-25, found {}",
                    node.kind_name()
                ),
            );
            return out;
        };
        for item in items {
            match item
                .as_str()
                .and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
            {
                Some(d) => {
                    out.insert(d);
                }
                None => self.err(
                    item.pos,
                    format!(
                        "`{}` is not a date (write YYYY-MM-DD, e.g. 2026-12-25)",
                        item.key_text()
                    ),
                ),
            }
        }
        out
    }

    fn retry(&mut self, node: &Node) -> Option<BotRetry> {
        if node.as_map().is_none() {
            self.err(
                node.pos,
                format!(
                    "`retry` must be a map like {{ attempts: 2, delay: 10m }}, found {}",
                    node.kind_name()
                ),
            );
            return None;
        }
        self.unknown_keys(node, RETRY_KEYS, "`retry`");
        let attempts = match node.get("attempts") {
            None => {
                self.err(node.pos, "`retry` is missing `attempts`");
                return None;
            }
            Some(a) => match a.value {
                Value::Int(i) if (1..=100).contains(&i) => i as u32,
                _ => {
                    self.err(
                        a.pos,
                        "`retry.attempts` must be a whole number from 1 to 100 (runs in all, the first included)",
                    );
                    return None;
                }
            },
        };
        let delay = match node.get("delay") {
            None => Duration::ZERO,
            Some(d) => self.duration(d, "retry.delay")?,
        };
        Some(BotRetry { attempts, delay })
    }

    fn notify(&mut self, node: &Node) -> Vec<String> {
        if node.as_map().is_none() {
            self.err(
                node.pos,
                format!(
                    "`notify` must be a map like {{ on_failure: [team@city.example] }}, found {}",
                    node.kind_name()
                ),
            );
            return Vec::new();
        }
        self.unknown_keys(node, NOTIFY_KEYS, "`notify`");
        let Some(list) = node.get("on_failure") else {
            return Vec::new();
        };
        let items: Vec<&Node> = match &list.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Str(_) => vec![list],
            _ => {
                self.err(
                    list.pos,
                    "`notify.on_failure` must be a list of mail addresses",
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str() {
                Some(s) if s.parse::<lettre::Address>().is_ok() => out.push(s.to_string()),
                _ => self.err(
                    item.pos,
                    format!("`{}` is not a mail address", item.key_text()),
                ),
            }
        }
        out
    }

    fn inputs(
        &mut self,
        pb: &Playbook,
        node: Option<&Node>,
        playbook_pos: Pos,
    ) -> serde_json::Map<String, Json> {
        let mut out = serde_json::Map::new();
        if let Some(node) = node {
            match node.as_map() {
                Some(map) => {
                    for (k, v) in map {
                        let name = k.key_text();
                        let Some(def) = pb.inputs.iter().find(|d| d.name == name) else {
                            let declared: Vec<&str> =
                                pb.inputs.iter().map(|d| d.name.as_str()).collect();
                            let hint = suggest(&name, declared.iter().copied())
                                .map(|s| format!(" (did you mean `{s}`?)"))
                                .unwrap_or_default();
                            let list = if declared.is_empty() {
                                "it declares no inputs".to_string()
                            } else {
                                format!("it declares: {}", declared.join(", "))
                            };
                            self.err(
                                k.pos,
                                format!(
                                    "unknown input `{name}` for playbook `{}` ({list}){hint}",
                                    pb.name
                                ),
                            );
                            continue;
                        };
                        let value = v.to_json();
                        let ok = def.kind.accepts(&value)
                            || value.as_str().is_some_and(|s| def.kind.coerce(s).is_ok());
                        if !ok {
                            self.err(
                                v.pos,
                                format!(
                                    "input `{name}` must be {}, found {}",
                                    def.kind.name(),
                                    v.kind_name()
                                ),
                            );
                            continue;
                        }
                        out.insert(name, value);
                    }
                }
                None if node.value == Value::Null => {}
                None => self.err(
                    node.pos,
                    format!(
                        "`inputs` must be a map of input names to values, found {}",
                        node.kind_name()
                    ),
                ),
            }
        }
        for def in &pb.inputs {
            let has_default = def.default.as_ref().is_some_and(|d| !d.is_null());
            if def.required && !has_default && !out.contains_key(&def.name) {
                let pos = node.map_or(playbook_pos, |n| n.pos);
                self.err(
                    pos,
                    format!(
                        "playbook `{}` requires input `{}`: add it under `inputs:`",
                        pb.name, def.name
                    ),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    const PB: &str = "name: p\ninputs:\n  who: { type: string, default: x }\n  n: { type: number, default: 1 }\nsteps:\n  - log: \"{{ inputs.who }}\"\n";

    #[test]
    fn loads_a_full_bot() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "playbooks/p.yaml", PB);
        let bot = write(
            dir.path(),
            "bots/b.yaml",
            "name: b\nplaybook: ../playbooks/p.yaml\nschedule:\n  - cron: \"30 2 * * Mon-Fri\"\n    timezone: Europe/Brussels\n  - \"*/2 * * * * *\"\ninputs: { who: me }\noverlap: queue\ncatch_up: all\ncatch_up_limit: 3\nmax_runtime: 2h\nretry: { attempts: 2, delay: 10m }\nnotify: { on_failure: [rpa@city.example] }\nexclude_dates: [2026-12-25]\n",
        );
        let b = load_bot_file(&bot).unwrap();
        assert_eq!(b.name, "b");
        assert_eq!(b.schedule.len(), 2);
        assert_eq!(b.overlap, Overlap::Queue);
        assert_eq!(b.catch_up, CatchUp::All);
        assert_eq!(b.catch_up_limit, 3);
        assert_eq!(b.on_interrupt, OnInterrupt::Resume, "the default");
        assert_eq!(b.max_runtime, Some(Duration::from_secs(7200)));
        assert_eq!(b.retry.unwrap().attempts, 2);
        let inputs = b.run_inputs(&[]).unwrap();
        assert_eq!(inputs["who"], "me");
        assert_eq!(inputs["n"], 1);
    }

    #[test]
    fn runs_on_labels_are_read_and_checked_with_positions() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "playbooks/p.yaml", PB);
        let ok = write(
            dir.path(),
            "bots/ok.yaml",
            "name: ok\nplaybook: ../playbooks/p.yaml\nschedule: [\"0 * * * *\"]\nruns_on: [VPN, grid-eu, vpn]\n",
        );
        let b = load_bot_file(&ok).unwrap();
        assert_eq!(b.runs_on, vec!["grid-eu".to_string(), "vpn".into()]);
        let typo = write(
            dir.path(),
            "bots/typo.yaml",
            "name: t\nplaybook: ../playbooks/p.yaml\nschedule: [\"0 * * * *\"]\nrun_on: [vpn]\n",
        );
        let d = load_bot_file(&typo).unwrap_err().to_string();
        assert!(
            d.contains("typo.yaml:4:1: unknown key `run_on` in the bot (did you mean `runs_on`?)"),
            "{d}"
        );
        let bad = write(
            dir.path(),
            "bots/bad.yaml",
            "name: b\nplaybook: ../playbooks/p.yaml\nschedule: [\"0 * * * *\"]\nruns_on: [vpn, \"eu west\", 3]\n",
        );
        let d = load_bot_file(&bad).unwrap_err().to_string();
        assert!(
            d.contains("bad.yaml:4:16: `runs_on`: label `eu west` may only use letters"),
            "{d}"
        );
        assert!(
            d.contains("bad.yaml:4:27: a `runs_on` label must be text, found"),
            "{d}"
        );
        let map = write(
            dir.path(),
            "bots/map.yaml",
            "name: m\nplaybook: ../playbooks/p.yaml\nschedule: [\"0 * * * *\"]\nruns_on: { vpn: true }\n",
        );
        let d = load_bot_file(&map).unwrap_err().to_string();
        assert!(
            d.contains("map.yaml:4:10: `runs_on` must be a list of worker labels like [vpn]"),
            "{d}"
        );
    }

    #[test]
    fn reports_every_problem_with_positions() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "playbooks/p.yaml", PB);
        let bot = write(
            dir.path(),
            "bots/b.yaml",
            "name: b\nplaybook: ../playbooks/p.yaml\nschedule:\n  - cron: \"61 * * * *\"\n    timezone: Europe/Brusels\ninputs: { whom: me }\noverlap: sometimes\nretyr: 1\n",
        );
        let d = load_bot_file(&bot).unwrap_err().to_string();
        assert!(
            d.contains("b.yaml:4:11: invalid cron expression `61 * * * *`"),
            "{d}"
        );
        assert!(
            d.contains(
                "b.yaml:5:15: unknown time zone `Europe/Brusels` (did you mean `Europe/Brussels`?)"
            ),
            "{d}"
        );
        assert!(d.contains("b.yaml:6:11: unknown input `whom`"), "{d}");
        assert!(d.contains("(did you mean `who`?)"), "{d}");
        assert!(
            d.contains("b.yaml:7:10: `overlap` must be one of skip, queue, allow"),
            "{d}"
        );
        assert!(
            d.contains("b.yaml:8:1: unknown key `retyr` in the bot (did you mean `retry`?)"),
            "{d}"
        );
        let missing = write(
            dir.path(),
            "bots/m.yaml",
            "name: m\nplaybook: ../playbooks/nope.yaml\nschedule: [\"0 * * * *\"]\n",
        );
        let d = load_bot_file(&missing).unwrap_err().to_string();
        assert!(
            d.contains("m.yaml:2:11: playbook `../playbooks/nope.yaml` not found"),
            "{d}"
        );
    }

    #[test]
    fn on_interrupt_is_read_and_checked_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "playbooks/p.yaml", PB);
        for (text, want) in [
            ("resume", OnInterrupt::Resume),
            ("retry", OnInterrupt::Retry),
            ("fail", OnInterrupt::Fail),
        ] {
            let bot = write(
                dir.path(),
                "bots/b.yaml",
                &format!(
                    "name: b\nplaybook: ../playbooks/p.yaml\nschedule: [\"0 * * * *\"]\non_interrupt: {text}\n"
                ),
            );
            assert_eq!(load_bot_file(&bot).unwrap().on_interrupt, want);
        }
        let bad = write(
            dir.path(),
            "bots/x.yaml",
            "name: x\nplaybook: ../playbooks/p.yaml\nschedule: [\"0 * * * *\"]\non_interrupt: restart\n",
        );
        let d = load_bot_file(&bad).unwrap_err().to_string();
        assert!(
            d.contains("x.yaml:4:15: `on_interrupt` must be one of resume, retry, fail"),
            "{d}"
        );
    }

    #[test]
    fn exclude_dates_are_not_fired() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "playbooks/p.yaml", PB);
        let bot = write(
            dir.path(),
            "bots/b.yaml",
            "name: b\nplaybook: ../playbooks/p.yaml\nschedule: [{ cron: \"0 9 * * *\", timezone: Europe/Brussels }]\nexclude_dates: [2026-12-25]\n",
        );
        let b = load_bot_file(&bot).unwrap();
        let from = DateTime::parse_from_rfc3339("2026-12-24T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = b.next_after(from).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-12-26T08:00:00+00:00");
    }
}
