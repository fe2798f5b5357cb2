//! `mail.fetch`: reads messages from a mailbox over IMAP, saves their
//! attachments, and tells the audit which messages (ids, senders, subjects,
//! sizes, attachment names and SHA-256) went into the run.

use std::collections::HashSet;

use chrono::{NaiveDate, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{self, Conn, uid_set};
use super::{journal, parse};
use crate::actions::types::OneOrMany;
use crate::actions::{Action, ActionContext, ActionError, ActionResult, DefaultRetry};
use crate::fsutil::sha256_hex;

fn inbox() -> String {
    "INBOX".into()
}

fn yes() -> bool {
    true
}

/// Arguments of `mail.fetch`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    /// The mailbox (folder) to read; default `INBOX`.
    #[serde(default = "inbox")]
    pub mailbox: String,
    /// Only messages not yet read (no `\Seen` flag); default true.
    #[serde(default = "yes")]
    pub unseen: bool,
    /// Only messages whose sender's address or name contains this text
    /// (case-insensitive).
    #[serde(default)]
    pub from: Option<String>,
    /// Only messages whose subject contains this text (case-insensitive,
    /// after decoding).
    #[serde(default)]
    pub subject: Option<String>,
    /// Only messages received on or after this day (`2025-01-31`), or within
    /// this long before now (`7d`, `12h`).
    #[serde(default)]
    pub since: Option<String>,
    /// At most this many messages, oldest first.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only these UIDs (e.g. `"{{ inputs.message.uid }}"` in a bot started by
    /// a mailbox trigger).
    #[serde(default)]
    pub uid: Option<OneOrMany<u32>>,
    /// Save every attachment into this folder (relative to the workspace,
    /// created if needed) under a safe name.
    #[serde(default)]
    pub save_attachments: Option<String>,
}

/// Fetches messages.
pub struct Fetch;

impl Action for Fetch {
    type Args = FetchArgs;
    const NAME: &'static str = "mail.fetch";
    const SUMMARY: &'static str =
        "Read messages from an IMAP mailbox (decoded bodies, attachments saved under safe names).";
    const EXAMPLE: &'static str = "- mail.fetch:\n    mailbox: INBOX\n    unseen: true\n    subject: permit\n    save_attachments: in/mail\n  save_as: messages\n  if: \"{{ false }}\"\n";
    const DEFAULT_RETRY: Option<DefaultRetry> = Some(DefaultRetry {
        attempts: 3,
        delay_ms: 2000,
        backoff: 2.0,
    });
    const RESULT: &'static str = "list of { uid, uidvalidity, mailbox, item_key, message_id, from, from_address, to, cc, subject, date, text, html, size, attachments: [{ name, original_name, path, size, sha256, content_type }], redelivered }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        let cfg = ctx.config.imap.clone();
        let server = client::server(&cfg);
        ctx.target(format!("{server}/{}", args.mailbox));
        ctx.detail("server", server.clone());
        ctx.detail("mailbox", args.mailbox.clone());
        let since = args.since.as_deref().map(since_date).transpose()?;
        let save_dir = match &args.save_attachments {
            Some(d) => Some(inside_workspace(ctx, d)?),
            None => None,
        };
        let password = client::password(&cfg, ctx.secrets)?;
        let mut conn = client::connect(&cfg, &password).await?;
        let result = fetch(ctx, &mut conn, &args, since, save_dir.as_deref(), &cfg).await;
        conn.logout().await;
        result
    }
}

async fn fetch(
    ctx: &mut ActionContext<'_>,
    conn: &mut Conn,
    args: &FetchArgs,
    since: Option<NaiveDate>,
    save_dir: Option<&std::path::Path>,
    cfg: &crate::config::ImapConfig,
) -> ActionResult {
    let (uidvalidity, _) = conn.select(&args.mailbox, true).await?;
    ctx.detail("uidvalidity", uidvalidity);
    let journal_server = journal_server(cfg);
    let lineage = journal::lineage(ctx).await?;
    let entries = journal::load(ctx, &lineage, &journal_server, &args.mailbox, uidvalidity).await?;
    let done: HashSet<u32> = entries
        .iter()
        .filter(|e| e.state == "done")
        .map(|e| e.uid as u32)
        .collect();
    let fetched_before: HashSet<u32> = entries
        .iter()
        .filter(|e| e.state == "fetched")
        .map(|e| e.uid as u32)
        .collect();

    let mut query: Vec<String> = Vec::new();
    if let Some(uids) = &args.uid {
        let v = uids.to_vec();
        if v.is_empty() {
            return Ok(Value::Array(vec![]));
        }
        query.push(format!("UID {}", uid_set(&v)));
    }
    if args.unseen {
        query.push("UNSEEN".into());
    }
    if let Some(d) = since {
        query.push(format!("SINCE {}", d.format("%-d-%b-%Y")));
    }
    if query.is_empty() {
        query.push("ALL".into());
    }
    let query = query.join(" ");
    ctx.detail("search", query.clone());
    let found = conn.uid_search(&query).await?;
    let already: Vec<u32> = found.iter().copied().filter(|u| done.contains(u)).collect();
    if !already.is_empty() {
        ctx.detail("already_handled", json!(already));
    }
    let candidates: Vec<u32> = found.into_iter().filter(|u| !done.contains(u)).collect();

    // Headers first: the filters read decoded senders and subjects.
    let mut heads: Vec<(u32, u64, parse::Summary)> = Vec::new();
    if !candidates.is_empty() {
        let fetched = conn
            .uid_fetch(&uid_set(&candidates), "(UID RFC822.SIZE BODY.PEEK[HEADER])")
            .await?;
        for f in fetched {
            let Some(uid) = f.uid else { continue };
            let size = u64::from(f.size.unwrap_or(0));
            let sum = parse::summary(f.header().unwrap_or_default());
            heads.push((uid, size, sum));
        }
    }
    heads.sort_by_key(|h| h.0);
    let from = args.from.as_ref().map(|s| s.to_lowercase());
    let subject = args.subject.as_ref().map(|s| s.to_lowercase());
    heads.retain(|(_, _, s)| {
        from.as_ref().is_none_or(|f| {
            s.from
                .iter()
                .chain(&s.from_display)
                .any(|a| a.to_lowercase().contains(f))
        }) && subject
            .as_ref()
            .is_none_or(|t| s.subject.to_lowercase().contains(t))
    });
    if let Some(limit) = args.limit {
        heads.truncate(limit as usize);
    }
    if let Some((uid, size, s)) = heads
        .iter()
        .find(|(_, size, _)| *size > cfg.max_message_size)
    {
        let subject = if ctx.step.sensitive {
            crate::secrets::MASK.to_string()
        } else {
            s.subject.clone()
        };
        return Err(ActionError::business(anyhow::anyhow!(
            "message UID {uid} in {} (\"{subject}\", {}) is {}, over the limit of {} per message \
             (`imap.max_message_size` in clerk.yaml); nothing was fetched",
            args.mailbox,
            s.message_id.as_deref().unwrap_or("no Message-ID"),
            human_size(*size),
            human_size(cfg.max_message_size)
        )));
    }

    if let Some(dir) = save_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            ActionError::permanent(anyhow::anyhow!(
                "cannot create {}: {e}",
                ctx.display_path(dir)
            ))
        })?;
    }
    let mut taken = save_dir.map(parse::existing_names).unwrap_or_default();
    let mut out = Vec::new();
    let mut audit = Vec::new();
    let mut journal_rows = Vec::new();
    for (uid, _, _) in &heads {
        let got = conn
            .uid_fetch(&uid.to_string(), "(UID BODY.PEEK[])")
            .await?;
        let Some(raw) = got
            .iter()
            .find(|f| f.uid == Some(*uid))
            .and_then(|f| f.body())
            .map(<[u8]>::to_vec)
        else {
            // Expunged between the search and now: not an error, just gone.
            continue;
        };
        if raw.len() as u64 > cfg.max_message_size {
            return Err(ActionError::business(anyhow::anyhow!(
                "message UID {uid} in {} is {}, over the limit of {} per message (`imap.max_message_size`)",
                args.mailbox,
                human_size(raw.len() as u64),
                human_size(cfg.max_message_size)
            )));
        }
        let dir = save_dir.map(std::path::Path::to_path_buf);
        let mut names = std::mem::take(&mut taken);
        let raw_for_parse = raw.clone();
        let (parsed, names) = tokio::task::spawn_blocking(move || {
            let r = parse::full(&raw_for_parse, dir.as_deref(), &mut names);
            (r, names)
        })
        .await
        .map_err(|e| ActionError::internal(anyhow::anyhow!("the attachment task failed: {e}")))?;
        taken = names;
        let parse::Parsed {
            summary: sum,
            text,
            html,
            attachments: saved,
        } = parsed.map_err(|e| {
            ActionError::permanent(anyhow::anyhow!(
                "message UID {uid} in {}: {e:#}",
                args.mailbox
            ))
        })?;
        let attachments: Vec<Value> = saved
            .iter()
            .map(|a| {
                json!({
                    "name": a.name,
                    "original_name": a.original_name,
                    "path": if save_dir.is_some() { Value::from(ctx.display_path(&a.path)) } else { Value::Null },
                    "size": a.size,
                    "sha256": a.sha256,
                    "content_type": a.content_type,
                })
            })
            .collect();
        let subject_shown = if ctx.step.sensitive {
            crate::secrets::MASK.to_string()
        } else {
            sum.subject.clone()
        };
        audit.push(json!({
            "uid": uid,
            "message_id": sum.message_id,
            "from": sum.from_display.first(),
            "subject": subject_shown,
            "date": sum.date,
            "size": raw.len(),
            "sha256": sha256_hex(&raw),
            "attachments": attachments.iter().map(|a| json!({
                "name": a["name"], "original_name": a["original_name"], "path": a["path"],
                "size": a["size"], "sha256": a["sha256"], "content_type": a["content_type"],
            })).collect::<Vec<_>>(),
        }));
        let mut msg = parse::summary_json(&sum);
        if let Some(obj) = msg.as_object_mut() {
            obj.insert("uid".into(), json!(uid));
            obj.insert("uidvalidity".into(), json!(uidvalidity));
            obj.insert("mailbox".into(), json!(args.mailbox));
            // The message as a work item of the lineage (a loop's
            // `checkpoint:`): the same message, and only it, has this key.
            obj.insert(
                "item_key".into(),
                json!(format!("{}/{uidvalidity}/{uid}", args.mailbox)),
            );
            obj.insert("text".into(), json!(text));
            obj.insert("html".into(), json!(html));
            obj.insert("size".into(), json!(raw.len()));
            obj.insert("attachments".into(), Value::Array(attachments));
            obj.insert("redelivered".into(), json!(fetched_before.contains(uid)));
        }
        let place = journal::Place {
            lineage: &lineage,
            server: &journal_server,
            mailbox: &args.mailbox,
            uidvalidity,
        };
        journal_rows.push(journal::entry(
            ctx,
            &place,
            *uid,
            "fetched",
            sum.message_id.clone(),
            None,
        ));
        out.push(msg);
    }
    ctx.detail("count", out.len() as u64);
    ctx.detail("messages", Value::Array(audit));
    journal::record(ctx, journal_rows).await?;
    Ok(Value::Array(out))
}

/// The server as the journal names it: the user, since two users' INBOX
/// on one server are two mailboxes.
pub fn journal_server(cfg: &crate::config::ImapConfig) -> String {
    format!(
        "{}@{}",
        cfg.username.as_deref().unwrap_or_default(),
        client::server(cfg)
    )
}

fn since_date(text: &str) -> Result<NaiveDate, ActionError> {
    if let Ok(d) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(d);
    }
    match crate::playbook::parse_duration(text) {
        Ok(d) => Ok((Utc::now() - chrono::Duration::from_std(d).unwrap_or_default()).date_naive()),
        Err(_) => Err(ActionError::permanent(anyhow::anyhow!(
            "`since`: `{text}` is neither a day (2025-01-31) nor a duration (7d, 12h)"
        ))),
    }
}

/// The attachments folder, which must stay inside the workspace.
fn inside_workspace(ctx: &ActionContext<'_>, dir: &str) -> Result<std::path::PathBuf, ActionError> {
    let full = crate::fsutil::normalize(&ctx.resolve(dir)?);
    let ws = crate::fsutil::normalize(&ctx.run.workspace);
    if !full.starts_with(&ws) {
        return Err(ActionError::permanent(anyhow::anyhow!(
            "`save_attachments`: `{dir}` is outside the workspace; give a folder inside it (e.g. in/mail)"
        )));
    }
    Ok(full)
}

pub fn human_size(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    } else if n >= 1024 {
        format!("{:.1} KB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}
