//! Mailbox triggers: a bot with `trigger: { mailbox: INBOX, from?, subject? }`
//! runs once per new matching message. `clerk serve` keeps one IMAP
//! connection per trigger, IDLE where the server offers it (polling where
//! not), and queues a run per message with the message as its `message`
//! input.
//!
//! What users of other tools complain about is a trigger that says it is
//! active and silently stopped. So:
//! - **Dead connections are found.** IDLE is ended and renewed every
//!   `keepalive` (default 5 minutes, always well before the 29 minutes
//!   after which servers drop an IDLE), with a NOOP in between that must be
//!   answered within `imap.timeout`; a connection the server closed (a
//!   restart, a BYE) ends the IDLE at once. Either way the trigger
//!   reconnects with backoff (0.5 s doubling to 60 s), and every disconnect
//!   and reconnect is an audit event (`trigger.disconnected`,
//!   `trigger.reconnected`).
//! - **Nothing is missed across downtime.** The last UID dealt with is kept
//!   per bot and mailbox with the mailbox's UIDVALIDITY; on (re)connect
//!   every message above it is looked at. On its very first contact a
//!   trigger takes the mailbox's unread messages.
//! - **Nothing is queued twice.** A message's run is queued in one
//!   transaction with a row keyed by (bot, mailbox, UIDVALIDITY, UID), so
//!   two `clerk serve` on one store, or a restart in the middle, queue it
//!   once. A UIDVALIDITY change is reported (`trigger.uidvalidity_changed`)
//!   and messages whose Message-ID already had a run are not queued again.
//! - **A run interrupted by a crash is continued** like any bot run, by the
//!   bot's `on_interrupt` policy (default: resumed in a new run of the same
//!   lineage, see docs/work-items.md), so `mail.send` does not mail twice
//!   and the IMAP journal hands the continuation its message again.
//! - `clerk bots list` shows each trigger's last contact with the server.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::bot::{Bot, Overlap};
use crate::audit::NewEvent;
use crate::engine::mailbox::client::{self, Conn, ImapError, uid_set};
use crate::engine::mailbox::parse;
use crate::engine::{Engine, GivenInput};
use crate::playbook::yaml::Node;
use crate::playbook::{Diagnostics, InputType, Playbook, checks};
use crate::store::time::{format_ts, now_micros};
use crate::store::{QueuedRun, Store, TriggerMessage, TriggerState};

/// A bot's mailbox trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct MailTrigger {
    pub mailbox: String,
    /// Sender address or name contains this (case-insensitive).
    pub from: Option<String>,
    /// Subject contains this (case-insensitive, decoded).
    pub subject: Option<String>,
    /// How often to look when the server has no IDLE.
    pub poll: Duration,
    /// How often to renew IDLE and check the connection with NOOP.
    pub keepalive: Duration,
}

const KEYS: &[&str] = &["mailbox", "from", "subject", "poll", "keepalive"];
/// IDLE must be renewed before servers drop it (RFC 2177: 29 minutes).
const MAX_KEEPALIVE: Duration = Duration::from_secs(25 * 60);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Reads `trigger:` of a bot file.
pub fn parse_node(diags: &mut Diagnostics, path: &Path, node: &Node) -> Option<MailTrigger> {
    if node.as_map().is_none() {
        diags.push(
            path,
            node.pos,
            format!(
                "`trigger` must be a map like {{ mailbox: INBOX, subject: permit }}, found {}",
                node.kind_name()
            ),
        );
        return None;
    }
    checks::unknown_keys(diags, path, node, KEYS, "`trigger`");
    let text = |diags: &mut Diagnostics, key: &str| {
        node.get(key)
            .and_then(|n| checks::string(diags, path, n, &format!("trigger.{key}")))
    };
    let mailbox = text(diags, "mailbox").unwrap_or_else(|| "INBOX".into());
    if mailbox.trim().is_empty() || mailbox.contains(['\r', '\n']) {
        diags.push(path, node.pos, "`trigger.mailbox` must be a mailbox name");
        return None;
    }
    let dur = |diags: &mut Diagnostics, key: &str, default: Duration| match node.get(key) {
        None => Some(default),
        Some(n) => checks::duration(diags, path, n, &format!("trigger.{key}"), "`30s` or `5m`"),
    };
    let poll = dur(diags, "poll", Duration::from_secs(30))?;
    let keepalive = dur(diags, "keepalive", Duration::from_secs(300))?;
    if keepalive.is_zero() || keepalive > MAX_KEEPALIVE || poll.is_zero() {
        diags.push(
            path,
            node.pos,
            "`trigger.keepalive` must be between 1s and 25m (servers drop an IDLE after 29 minutes), `trigger.poll` above 0s",
        );
        return None;
    }
    Some(MailTrigger {
        mailbox,
        from: text(diags, "from"),
        subject: text(diags, "subject"),
        poll,
        keepalive,
    })
}

/// A triggered bot's playbook must take the message: `message: { type: map }`.
pub fn check_playbook(pb: &Playbook) -> Option<String> {
    match pb.inputs.iter().find(|i| i.name == "message") {
        Some(i) if i.kind == InputType::Map => None,
        Some(_) => Some(format!(
            "playbook `{}` declares input `message` but not as a map; a mailbox trigger passes the message as `message: {{ type: map }}`",
            pb.name
        )),
        None => Some(format!(
            "playbook `{}` has no input `message`: a bot with a mailbox trigger passes each message to its run as `inputs.message` (declare `message: {{ type: map }}`)",
            pb.name
        )),
    }
}

/// What the trigger tasks share.
struct Ctx {
    engine: Engine,
    store: Store,
    workspace: PathBuf,
    stop: CancellationToken,
    wake: Arc<Notify>,
    /// Strictly increasing `scheduled_for` values (the runs table keys
    /// firings by bot and time; two messages in one microsecond stay apart).
    last_slot: std::sync::Mutex<DateTime<Utc>>,
}

/// The bots `clerk serve` has loaded now (they change on SIGHUP).
pub type BotsNow = Arc<HashMap<String, Arc<Bot>>>;

/// Starts the trigger supervisor: one watcher per enabled bot with a
/// trigger (restarted when SIGHUP reloads the bots). All end when `stop` is
/// cancelled.
pub fn start(
    engine: &Engine,
    workspace: &Path,
    bots: impl Fn() -> BotsNow + Send + Sync + 'static,
    stop: CancellationToken,
    wake: Arc<Notify>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ctx = Arc::new(Ctx {
        engine: engine.clone(),
        store: engine.recorder.store().clone(),
        workspace: workspace.to_path_buf(),
        stop,
        wake,
        last_slot: std::sync::Mutex::new(Utc::now()),
    });
    let names = Arc::new(std::sync::RwLock::new(HashSet::new()));
    vec![tokio::spawn(supervise(ctx, bots, names))]
}

/// Keeps one watcher per triggered bot; after a reload (a new bot map)
/// every watcher is restarted with the bot as now written.
async fn supervise(
    ctx: Arc<Ctx>,
    bots: impl Fn() -> BotsNow,
    names: Arc<std::sync::RwLock<HashSet<String>>>,
) {
    let mut current: Option<BotsNow> = None;
    let mut watchers: Vec<(CancellationToken, tokio::task::JoinHandle<()>)> = Vec::new();
    loop {
        let now = bots();
        if current.as_ref().is_none_or(|c| !Arc::ptr_eq(c, &now)) {
            for (token, handle) in watchers.drain(..) {
                token.cancel();
                let _ = handle.await;
            }
            let triggered: Vec<Arc<Bot>> = now
                .values()
                .filter(|b| b.enabled && b.trigger.is_some())
                .cloned()
                .collect();
            if let Ok(mut n) = names.write() {
                *n = triggered.iter().map(|b| b.name.clone()).collect();
            }
            for bot in triggered {
                let token = ctx.stop.child_token();
                let handle = tokio::spawn(watch(ctx.clone(), bot, token.clone()));
                watchers.push((token, handle));
            }
            current = Some(now);
        }
        if sleep_or_stop(&ctx.stop, Duration::from_secs(2)).await {
            break;
        }
    }
    for (_, handle) in watchers {
        let _ = handle.await;
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << failures.min(7))).min(MAX_BACKOFF)
}

async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}

async fn audit(
    ctx: &Ctx,
    kind: &str,
    bot: &Bot,
    outcome: &str,
    detail: Value,
    error: Option<&str>,
) {
    let mut ev = NewEvent::new(kind, &bot.name)
        .target(bot.name.as_str())
        .outcome(outcome)
        .detail(detail);
    if let Some(e) = error {
        ev = ev.error(e);
    }
    let ev = ctx.engine.recorder.redact_event(ev);
    if let Err(e) = ctx.engine.recorder.record(ev).await {
        tracing::warn!(bot = %bot.name, error = %format!("{e:#}"), "cannot record the trigger event {kind}");
    }
}

/// The life of one trigger: connect, watch, and when the connection fails,
/// say so and reconnect.
async fn watch(ctx: Arc<Ctx>, bot: Arc<Bot>, stop: CancellationToken) {
    let Some(trigger) = bot.trigger.clone() else {
        return;
    };
    let cfg = &ctx.engine.config.imap;
    let server = client::server(cfg);
    let mut failures = 0u32;
    // Since when the connection is down, and why (None: up or never tried).
    let mut down: Option<(Instant, String)> = None;
    let mut ever_connected = false;
    tracing::info!(bot = %bot.name, mailbox = %trigger.mailbox, %server, "mailbox trigger starting");
    loop {
        if stop.is_cancelled() {
            break;
        }
        let result = session(
            &ctx,
            &bot,
            &trigger,
            &stop,
            &mut down,
            &mut failures,
            &mut ever_connected,
        )
        .await;
        let e = match result {
            Ok(()) => break, // stopping
            Err(e) => e,
        };
        failures += 1;
        let wait = backoff(failures);
        tracing::warn!(bot = %bot.name, error = %e, retry_in = ?wait, "mailbox trigger: connection failed or lost; reconnecting");
        if down.is_none() {
            down = Some((Instant::now(), e.message.clone()));
            audit(
                &ctx,
                "trigger.disconnected",
                &bot,
                "failed",
                json!({ "bot": bot.name, "server": server, "mailbox": trigger.mailbox, "retry_in_ms": wait.as_millis() as u64 }),
                Some(&e.message),
            )
            .await;
        }
        let _ = save_status(&ctx, &bot, &trigger, "disconnected", Some(&e.message)).await;
        if sleep_or_stop(&stop, wait).await {
            break;
        }
    }
    let _ = save_status(&ctx, &bot, &trigger, "stopped", None).await;
    tracing::info!(bot = %bot.name, "mailbox trigger stopped");
}

/// Keeps the trigger's status (and not its cursor) up to date.
async fn save_status(
    ctx: &Ctx,
    bot: &Bot,
    trigger: &MailTrigger,
    status: &str,
    error: Option<&str>,
) -> anyhow::Result<()> {
    let Some(mut st) = ctx.store.trigger_state(&bot.name, &trigger.mailbox).await? else {
        return Ok(());
    };
    st.status = status.into();
    st.error = error.map(crate::secrets::redact);
    st.last_contact = None; // unchanged
    ctx.store.trigger_save(&st, None).await?;
    Ok(())
}

/// One connection: returns Ok(()) when stopping, Err when it failed.
async fn session(
    ctx: &Ctx,
    bot: &Bot,
    trigger: &MailTrigger,
    stop: &CancellationToken,
    down: &mut Option<(Instant, String)>,
    failures: &mut u32,
    ever_connected: &mut bool,
) -> Result<(), ImapError> {
    let cfg = &ctx.engine.config.imap;
    let password = client::password(cfg, &ctx.engine.secrets)?;
    let mut conn = client::connect(cfg, &password).await?;
    let (uidvalidity, _) = conn.select(&trigger.mailbox, true).await?;
    let has_idle = conn.has_capability("IDLE").await?;
    let mode = if has_idle { "idle" } else { "polling" };
    if let Some((since, why)) = down.take() {
        audit(
            ctx,
            "trigger.reconnected",
            bot,
            "ok",
            json!({
                "bot": bot.name, "server": conn.server, "mailbox": trigger.mailbox,
                "down_ms": since.elapsed().as_millis() as u64, "attempts": *failures,
                "cause": why, "mode": mode,
            }),
            None,
        )
        .await;
        tracing::info!(bot = %bot.name, "mailbox trigger reconnected");
    } else if !*ever_connected {
        audit(
            ctx,
            "trigger.connected",
            bot,
            "ok",
            json!({ "bot": bot.name, "server": conn.server, "mailbox": trigger.mailbox, "mode": mode, "uidvalidity": uidvalidity }),
            None,
        )
        .await;
    }
    *ever_connected = true;
    *failures = 0;

    let mut state = prepare_state(ctx, bot, trigger, &conn.server, uidvalidity).await?;
    loop {
        scan(ctx, bot, trigger, &mut conn, &mut state).await?;
        state.status = mode.into();
        state.error = None;
        state.last_contact = Some(format_ts(&now_micros()));
        ctx.store
            .trigger_save(&state, None)
            .await
            .map_err(|e| store_err(&e))?;
        if has_idle {
            // What earlier commands reported is covered by the scan just
            // made; a message arriving between that scan and IDLE is
            // reported to the IDLE command itself, outside `wait`, so the
            // channel is watched too (else it would wait for the keepalive).
            while conn.session.unsolicited_responses.try_recv().is_ok() {}
            let news = conn.session.unsolicited_responses.clone();
            let Conn {
                session,
                server,
                timeout,
            } = conn;
            let mut handle = session.idle();
            client::timed(&server, timeout, "IDLE", handle.init()).await?;
            let outcome = {
                let (wait, _interrupt) = handle.wait_with_timeout(trigger.keepalive);
                tokio::select! {
                    r = wait => Some(r),
                    _ = news.recv() => Some(Ok(async_imap::extensions::idle::IdleResponse::ManualInterrupt)),
                    _ = stop.cancelled() => None,
                }
            };
            let session =
                client::timed(&server, timeout, "DONE (end of IDLE)", handle.done()).await;
            let Some(outcome) = outcome else {
                if let Ok(s) = session {
                    (Conn {
                        session: s,
                        server,
                        timeout,
                    })
                    .logout()
                    .await;
                }
                return Ok(());
            };
            conn = Conn {
                session: session?,
                server,
                timeout,
            };
            match outcome {
                Ok(async_imap::extensions::idle::IdleResponse::Timeout) => {
                    // Renewal time: prove the connection is alive.
                    conn.noop().await?;
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(ImapError {
                        kind: crate::engine::ErrorKind::System,
                        message: format!("the IDLE connection to {} failed: {e}", conn.server),
                    });
                }
            }
        } else {
            if sleep_or_stop(stop, trigger.poll).await {
                conn.logout().await;
                return Ok(());
            }
            conn.noop().await?;
        }
    }
}

fn store_err(e: &dyn std::fmt::Display) -> ImapError {
    ImapError {
        kind: crate::engine::ErrorKind::System,
        message: format!("the store is unavailable: {e}"),
    }
}

/// The trigger's cursor, created on first contact and checked against the
/// mailbox's UIDVALIDITY.
async fn prepare_state(
    ctx: &Ctx,
    bot: &Bot,
    trigger: &MailTrigger,
    server: &str,
    uidvalidity: u32,
) -> Result<TriggerState, ImapError> {
    let now = format_ts(&now_micros());
    let existing = ctx
        .store
        .trigger_state(&bot.name, &trigger.mailbox)
        .await
        .map_err(|e| store_err(&e))?;
    let state = match existing {
        Some(mut st) if st.uidvalidity == i64::from(uidvalidity) => {
            st.server = server.into();
            st.last_contact = Some(now);
            st
        }
        Some(old) => {
            // UIDs of the old generation mean nothing now: rescan everything,
            // recognising messages by Message-ID.
            let detail = json!({
                "bot": bot.name, "server": server, "mailbox": trigger.mailbox,
                "was": old.uidvalidity, "now": uidvalidity, "last_uid_was": old.last_uid,
            });
            let st = TriggerState {
                bot: bot.name.clone(),
                mailbox: trigger.mailbox.clone(),
                server: server.into(),
                uidvalidity: i64::from(uidvalidity),
                last_uid: 0,
                last_contact: Some(now),
                status: "connected".into(),
                error: None,
            };
            let ev = ctx.engine.recorder.redact_event(
                NewEvent::new("trigger.uidvalidity_changed", &bot.name)
                    .target(bot.name.as_str())
                    .outcome("ok")
                    .detail(detail),
            );
            tracing::warn!(bot = %bot.name, mailbox = %trigger.mailbox, was = old.uidvalidity, now = uidvalidity, "UIDVALIDITY changed: messages are matched by Message-ID, not UID, to avoid running twice");
            ctx.store
                .trigger_save(&st, Some(ev))
                .await
                .map_err(|e| store_err(&e))?;
            return Ok(st);
        }
        None => TriggerState {
            bot: bot.name.clone(),
            mailbox: trigger.mailbox.clone(),
            server: server.into(),
            uidvalidity: i64::from(uidvalidity),
            // -1: never scanned; the first scan takes the unread messages.
            last_uid: -1,
            last_contact: Some(now),
            status: "connected".into(),
            error: None,
        },
    };
    ctx.store
        .trigger_save(&state, None)
        .await
        .map_err(|e| store_err(&e))?;
    Ok(state)
}

/// Looks at every message above the cursor and queues a run for each
/// matching one.
async fn scan(
    ctx: &Ctx,
    bot: &Bot,
    trigger: &MailTrigger,
    conn: &mut Conn,
    state: &mut TriggerState,
) -> Result<(), ImapError> {
    let paused = ctx.store.paused_bots().await.map_err(|e| store_err(&e))?;
    if paused.contains(&bot.name) {
        return Ok(()); // messages wait for `clerk bots resume`
    }
    let query = if state.last_uid < 0 {
        "UNSEEN".to_string()
    } else {
        format!("UID {}:*", state.last_uid + 1)
    };
    let uids: Vec<u32> = conn
        .uid_search(&query)
        .await?
        .into_iter()
        .filter(|u| i64::from(*u) > state.last_uid)
        .collect();
    if uids.is_empty() {
        if state.last_uid < 0 {
            state.last_uid = 0;
        }
        return Ok(());
    }
    let known_ids: HashSet<String> = if state.last_uid == 0 {
        ctx.store
            .trigger_message_ids(&bot.name, &trigger.mailbox)
            .await
            .map_err(|e| store_err(&e))?
            .into_iter()
            .collect()
    } else {
        HashSet::new()
    };
    let heads = conn
        .uid_fetch(&uid_set(&uids), "(UID RFC822.SIZE BODY.PEEK[HEADER])")
        .await?;
    let mut heads: Vec<_> = heads
        .iter()
        .filter_map(|f| {
            Some((
                f.uid?,
                f.size.unwrap_or(0),
                parse::summary(f.header().unwrap_or_default()),
            ))
        })
        .collect();
    heads.sort_by_key(|h| h.0);
    let from = trigger.from.as_ref().map(|s| s.to_lowercase());
    let subject = trigger.subject.as_ref().map(|s| s.to_lowercase());
    for (uid, size, sum) in heads {
        let matches = from.as_ref().is_none_or(|f| {
            sum.from
                .iter()
                .chain(&sum.from_display)
                .any(|a| a.to_lowercase().contains(f))
        }) && subject
            .as_ref()
            .is_none_or(|t| sum.subject.to_lowercase().contains(t));
        let seen_before = sum
            .message_id
            .as_ref()
            .is_some_and(|id| known_ids.contains(id));
        if matches && !seen_before {
            queue(ctx, bot, trigger, state, uid, size, &sum).await?;
        }
        state.last_uid = state.last_uid.max(i64::from(uid));
    }
    Ok(())
}

async fn queue(
    ctx: &Ctx,
    bot: &Bot,
    trigger: &MailTrigger,
    state: &TriggerState,
    uid: u32,
    size: u32,
    sum: &parse::Summary,
) -> Result<(), ImapError> {
    let mut message = parse::summary_json(sum);
    if let Some(o) = message.as_object_mut() {
        o.insert("uid".into(), json!(uid));
        o.insert("uidvalidity".into(), json!(state.uidvalidity));
        o.insert("mailbox".into(), json!(trigger.mailbox));
        o.insert("size".into(), json!(size));
    }
    let inputs = match bot.run_inputs(&[("message".into(), GivenInput::Json(message.clone()))]) {
        Ok(i) => Value::Object(i),
        Err(e) => {
            tracing::error!(bot = %bot.name, "cannot build the run's inputs for message UID {uid}: {e}");
            return Ok(());
        }
    };
    let slot = {
        let mut last = match ctx.last_slot.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut t = now_micros();
        if t <= *last {
            t = *last + chrono::Duration::microseconds(1);
        }
        *last = t;
        t
    };
    let id = ulid::Ulid::new().to_string();
    let playbook = bot.playbook_label(&ctx.workspace);
    let event = NewEvent::new("run.queued", &bot.name).detail(json!({
        "bot": bot.name,
        "playbook": playbook,
        "scheduled_for": format_ts(&slot),
        "trigger": {
            "mailbox": trigger.mailbox, "server": state.server, "uidvalidity": state.uidvalidity,
            "uid": uid, "message_id": sum.message_id, "from": sum.from_display.first(),
            "subject": sum.subject,
        },
        "inputs": inputs,
    }));
    let run = QueuedRun {
        id: id.clone(),
        bot: bot.name.clone(),
        playbook,
        inputs,
        scheduled_for: Some(slot),
        due_at: now_micros(),
        // A message is never dropped because the previous one is still being
        // handled: it waits its turn (or runs alongside with overlap: allow).
        overlap: if bot.overlap == Overlap::Allow {
            "allow"
        } else {
            "queue"
        }
        .into(),
        actor: bot.name.clone(),
        attempt: 1,
        retry_of: None,
        event: ctx.engine.recorder.redact_event(event),
    };
    let msg = TriggerMessage {
        bot: bot.name.clone(),
        mailbox: trigger.mailbox.clone(),
        server: state.server.clone(),
        uidvalidity: state.uidvalidity,
        uid: i64::from(uid),
        message_id: sum.message_id.clone(),
    };
    let queued = ctx
        .store
        .trigger_queue(&msg, &run)
        .await
        .map_err(|e| store_err(&e))?;
    if queued {
        tracing::info!(bot = %bot.name, run = %id, uid, message_id = ?sum.message_id, "mail arrived: run queued");
        ctx.wake.notify_waiters();
    }
    Ok(())
}

/// Lines for `clerk bots list`: each trigger and its last contact.
pub async fn describe(store: &Store, bots: &[Bot]) -> Vec<(String, Value)> {
    let states = store.trigger_states().await.unwrap_or_default();
    bots.iter()
        .filter_map(|b| {
            let t = b.trigger.as_ref()?;
            let st = states
                .iter()
                .find(|s| s.bot == b.name && s.mailbox == t.mailbox);
            Some((
                b.name.clone(),
                json!({
                    "mailbox": t.mailbox,
                    "from": t.from,
                    "subject": t.subject,
                    "server": st.map(|s| s.server.clone()),
                    "status": st.map_or("never connected".to_string(), |s| s.status.clone()),
                    "last_contact": st.and_then(|s| s.last_contact.clone()),
                    "last_uid": st.map(|s| s.last_uid),
                    "error": st.and_then(|s| s.error.clone()),
                }),
            ))
        })
        .collect()
}

/// The SCHEDULE cell of `clerk bots list`: the crons, and `mail: MAILBOX`
/// for a bot with a trigger.
pub fn schedule_cell(bot: &str, crons: String, triggers: &[(String, Value)]) -> String {
    match triggers.iter().find(|(n, _)| n == bot) {
        Some((_, t)) => {
            let mail = format!("mail: {}", t["mailbox"].as_str().unwrap_or("INBOX"));
            if crons.is_empty() {
                mail
            } else {
                format!("{crons} | {mail}")
            }
        }
        None => crons,
    }
}

/// Adds `trigger` to each bot object of `clerk bots list --json`.
pub fn annotate(list: &mut Value, triggers: &[(String, Value)]) {
    if let Some(items) = list.as_array_mut() {
        for item in items {
            let name = item["name"].as_str().unwrap_or_default().to_string();
            if let (Some(obj), Some((_, t))) = (
                item.as_object_mut(),
                triggers.iter().find(|(n, _)| *n == name),
            ) {
                obj.insert("trigger".into(), t.clone());
            }
        }
    }
}

/// `trigger: bot watches MAILBOX on SERVER — STATUS, last contact T` lines.
pub fn lines(triggers: &[(String, Value)]) -> String {
    let mut out = String::new();
    for (name, t) in triggers {
        out.push_str(&format!(
            "\ntrigger: {name} watches {} on {} — {}, last contact {}",
            t["mailbox"].as_str().unwrap_or("-"),
            t["server"].as_str().unwrap_or("-"),
            t["status"].as_str().unwrap_or("-"),
            t["last_contact"].as_str().unwrap_or("never"),
        ));
        if let Some(e) = t["error"].as_str() {
            out.push_str(&format!(" ({e})"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn parses_a_trigger() {
        let root = crate::playbook::yaml::parse(
            "trigger: { mailbox: Permits, subject: permit, keepalive: 1m, colour: red }\n",
        )
        .unwrap();
        let mut d = Diagnostics::default();
        let t = parse_node(&mut d, Path::new("b.yaml"), root.get("trigger").unwrap()).unwrap();
        assert_eq!(t.mailbox, "Permits");
        assert_eq!(t.subject.as_deref(), Some("permit"));
        assert_eq!(t.keepalive, Duration::from_secs(60));
        assert!(d.to_string().contains("unknown key `colour`"), "{d}");
        let root = crate::playbook::yaml::parse("trigger: { keepalive: 40m }\n").unwrap();
        let mut d = Diagnostics::default();
        assert!(parse_node(&mut d, Path::new("b.yaml"), root.get("trigger").unwrap()).is_none());
        assert!(d.to_string().contains("29 minutes"), "{d}");
    }
}
