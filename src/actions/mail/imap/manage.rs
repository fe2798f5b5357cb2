//! `mail.move`, `mail.flag`, `mail.delete`: what a run does with a message
//! once it has handled it. Each names the messages by UID (as `mail.fetch`
//! returned them), records their ids, senders and subjects in the audit,
//! and marks them `done` in the lineage's journal, so a resumed run that
//! repeats the step finds it done instead of failing on a UID that has
//! left the mailbox.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{self, Conn, quote, uid_set};
use super::fetch::journal_server;
use super::{journal, parse};
use crate::actions::types::OneOrMany;
use crate::actions::{Action, ActionContext, ActionError, ActionResult, DefaultRetry};

fn inbox() -> String {
    "INBOX".into()
}

const RETRY: Option<DefaultRetry> = Some(DefaultRetry {
    attempts: 3,
    delay_ms: 2000,
    backoff: 2.0,
});

/// Arguments of `mail.move`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveArgs {
    /// The message UID(s), as `mail.fetch` returned them (`uid` or `uids`).
    #[serde(alias = "uids")]
    pub uid: OneOrMany<u32>,
    /// The mailbox they are in; default `INBOX`.
    #[serde(default = "inbox")]
    pub mailbox: String,
    /// The mailbox to move them to (created if it does not exist), e.g. `Processed`.
    pub to: String,
    /// The UIDVALIDITY `mail.fetch` returned; if the mailbox's differs, nothing is moved.
    #[serde(default)]
    pub uidvalidity: Option<u32>,
}

/// Arguments of `mail.flag`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagArgs {
    /// The message UID(s) (`uid` or `uids`).
    #[serde(alias = "uids")]
    pub uid: OneOrMany<u32>,
    /// The mailbox they are in; default `INBOX`.
    #[serde(default = "inbox")]
    pub mailbox: String,
    /// Mark read (`true`) or unread (`false`).
    #[serde(default)]
    pub seen: Option<bool>,
    /// Set or clear the `\Flagged` (starred) flag.
    #[serde(default)]
    pub flagged: Option<bool>,
    /// The UIDVALIDITY `mail.fetch` returned; if the mailbox's differs, nothing is changed.
    #[serde(default)]
    pub uidvalidity: Option<u32>,
}

/// Arguments of `mail.delete`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    /// The message UID(s) (`uid` or `uids`).
    #[serde(alias = "uids")]
    pub uid: OneOrMany<u32>,
    /// The mailbox they are in; default `INBOX`.
    #[serde(default = "inbox")]
    pub mailbox: String,
    /// The UIDVALIDITY `mail.fetch` returned; if the mailbox's differs, nothing is deleted.
    #[serde(default)]
    pub uidvalidity: Option<u32>,
}

/// Moves messages to another mailbox.
pub struct Move;
/// Sets or clears flags.
pub struct Flag;
/// Deletes messages (flag `\Deleted` and expunge them).
pub struct Delete;

enum Op<'a> {
    Move(&'a str),
    Flag(Option<bool>, Option<bool>),
    Delete,
}

impl Action for Move {
    type Args = MoveArgs;
    const NAME: &'static str = "mail.move";
    const SUMMARY: &'static str = "Move messages (by UID) to another IMAP mailbox, e.g. Processed.";
    const EXAMPLE: &'static str = "- mail.move: { uid: 7, to: Processed }\n  if: \"{{ false }}\"\n";
    const DEFAULT_RETRY: Option<DefaultRetry> = RETRY;
    const RESULT: &'static str = "{ uids, moved, already_done, to }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        manage(
            ctx,
            &args.mailbox,
            &args.uid.to_vec(),
            args.uidvalidity,
            Op::Move(&args.to),
        )
        .await
    }
}

impl Action for Flag {
    type Args = FlagArgs;
    const NAME: &'static str = "mail.flag";
    const SUMMARY: &'static str = "Mark messages (by UID) read or unread, flagged or not.";
    const EXAMPLE: &'static str =
        "- mail.flag: { uid: [7, 8], seen: true }\n  if: \"{{ false }}\"\n";
    const DEFAULT_RETRY: Option<DefaultRetry> = RETRY;
    const RESULT: &'static str = "{ uids, changed, already_done }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        if args.seen.is_none() && args.flagged.is_none() {
            return Err(ActionError::permanent(anyhow::anyhow!(
                "mail.flag needs `seen: true|false` or `flagged: true|false`"
            )));
        }
        manage(
            ctx,
            &args.mailbox,
            &args.uid.to_vec(),
            args.uidvalidity,
            Op::Flag(args.seen, args.flagged),
        )
        .await
    }
}

impl Action for Delete {
    type Args = DeleteArgs;
    const NAME: &'static str = "mail.delete";
    const SUMMARY: &'static str = "Delete messages (by UID) from an IMAP mailbox.";
    const EXAMPLE: &'static str = "- mail.delete: { uid: 7 }\n  if: \"{{ false }}\"\n";
    const DEFAULT_RETRY: Option<DefaultRetry> = RETRY;
    const RESULT: &'static str = "{ uids, deleted, already_done }";

    async fn run(ctx: &mut ActionContext<'_>, args: Self::Args) -> ActionResult {
        manage(
            ctx,
            &args.mailbox,
            &args.uid.to_vec(),
            args.uidvalidity,
            Op::Delete,
        )
        .await
    }
}

async fn manage(
    ctx: &mut ActionContext<'_>,
    mailbox: &str,
    uids: &[u32],
    expected_validity: Option<u32>,
    op: Op<'_>,
) -> ActionResult {
    let cfg = ctx.config.imap.clone();
    let server = client::server(&cfg);
    ctx.target(format!("{server}/{mailbox}"));
    ctx.detail("server", server.clone());
    ctx.detail("mailbox", mailbox);
    ctx.detail("uids", json!(uids));
    if let Op::Move(to) = &op {
        quote(to)?;
        ctx.detail("to", *to);
    }
    let password = client::password(&cfg, ctx.secrets)?;
    let mut conn = client::connect(&cfg, &password).await?;
    let r = manage_on(ctx, &mut conn, &cfg, mailbox, uids, expected_validity, &op).await;
    conn.logout().await;
    r
}

async fn manage_on(
    ctx: &mut ActionContext<'_>,
    conn: &mut Conn,
    cfg: &crate::config::ImapConfig,
    mailbox: &str,
    uids: &[u32],
    expected_validity: Option<u32>,
    op: &Op<'_>,
) -> ActionResult {
    let (uidvalidity, _) = conn.select(mailbox, false).await?;
    ctx.detail("uidvalidity", uidvalidity);
    if let Some(v) = expected_validity
        && v != uidvalidity
    {
        return Err(ActionError::business(anyhow::anyhow!(
            "the UIDVALIDITY of {mailbox} is now {uidvalidity}, not {v} as when the messages were fetched: \
             UIDs {} may name other messages, so nothing was changed",
            uid_set(uids)
        )));
    }
    let jserver = journal_server(cfg);
    let lineage = journal::lineage(ctx).await?;
    let entries = journal::load(ctx, &lineage, &jserver, mailbox, uidvalidity).await?;
    let action = match op {
        Op::Move(_) => "mail.move",
        Op::Flag(..) => "mail.flag",
        Op::Delete => "mail.delete",
    };
    // Finished by this same step in this lineage before (a resumed run)?
    let done_here: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| {
            entries.iter().any(|e| {
                e.uid == i64::from(*u) && e.state == "done" && e.action.as_deref() == Some(action)
            })
        })
        .collect();

    let present: Vec<u32> = if uids.is_empty() {
        Vec::new()
    } else {
        conn.uid_search(&format!("UID {}", uid_set(uids))).await?
    };
    let missing: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|u| !present.contains(u) && !done_here.contains(u))
        .collect();
    if !missing.is_empty() {
        return Err(ActionError::business(anyhow::anyhow!(
            "no message with UID {} in {mailbox} (already moved or deleted by someone else?); nothing was changed",
            uid_set(&missing)
        )));
    }
    let todo: Vec<u32> = present
        .iter()
        .copied()
        .filter(|u| !(done_here.contains(u) && matches!(op, Op::Move(_) | Op::Delete)))
        .collect();
    let already: Vec<u32> = done_here
        .iter()
        .copied()
        .filter(|u| !todo.contains(u))
        .collect();
    if !already.is_empty() {
        ctx.detail("already_done", json!(already));
    }

    // What the audit must say about each message.
    let mut described = Vec::new();
    let mut ids: Vec<(u32, Option<String>)> = Vec::new();
    if !todo.is_empty() {
        let heads = conn
            .uid_fetch(&uid_set(&todo), "(UID RFC822.SIZE BODY.PEEK[HEADER])")
            .await?;
        for f in &heads {
            let Some(uid) = f.uid else { continue };
            let s = parse::summary(f.header().unwrap_or_default());
            let subject = if ctx.step.sensitive {
                crate::secrets::MASK.to_string()
            } else {
                s.subject.clone()
            };
            described.push(json!({
                "uid": uid,
                "message_id": s.message_id,
                "from": s.from_display.first(),
                "subject": subject,
                "size": f.size,
            }));
            ids.push((uid, s.message_id));
        }
    }
    ctx.detail("messages", Value::Array(described));

    if !todo.is_empty() {
        let set = uid_set(&todo);
        match op {
            Op::Move(to) => move_to(conn, &set, to).await?,
            Op::Flag(seen, flagged) => {
                for (flag, on) in [("\\Seen", seen), ("\\Flagged", flagged)] {
                    if let Some(on) = on {
                        let sign = if *on { '+' } else { '-' };
                        conn.command(
                            &format!("UID STORE {set} {sign}FLAGS.SILENT ({flag})"),
                            "UID STORE",
                        )
                        .await?;
                    }
                }
            }
            Op::Delete => {
                conn.command(
                    &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
                    "UID STORE",
                )
                .await?;
                if conn.has_capability("UIDPLUS").await? {
                    conn.command(&format!("UID EXPUNGE {set}"), "UID EXPUNGE")
                        .await?;
                } else {
                    conn.command("EXPUNGE", "EXPUNGE").await?;
                }
            }
        }
    }
    let place = journal::Place {
        lineage: &lineage,
        server: &jserver,
        mailbox,
        uidvalidity,
    };
    let rows = ids
        .into_iter()
        .map(|(uid, mid)| journal::entry(ctx, &place, uid, "done", mid, Some(action)))
        .collect();
    journal::record(ctx, rows).await?;
    let key = match op {
        Op::Move(_) => "moved",
        Op::Flag(..) => "changed",
        Op::Delete => "deleted",
    };
    let mut out = json!({ "uids": uids, key: todo, "already_done": already });
    if let (Op::Move(to), Some(obj)) = (op, out.as_object_mut()) {
        obj.insert("to".into(), json!(to));
    }
    Ok(out)
}

/// UID MOVE (or COPY + delete where MOVE is missing); creates the target
/// when the server says it does not exist (`[TRYCREATE]`).
async fn move_to(conn: &mut Conn, set: &str, to: &str) -> Result<(), ActionError> {
    let target = quote(to)?;
    let has_move = conn.has_capability("MOVE").await?;
    let (cmd, what) = if has_move {
        (format!("UID MOVE {set} {target}"), "UID MOVE")
    } else {
        (format!("UID COPY {set} {target}"), "UID COPY")
    };
    match conn.command(&cmd, what).await {
        Ok(()) => {}
        Err(e) if e.message.contains("TRYCREATE") => {
            conn.command(&format!("CREATE {target}"), "CREATE").await?;
            conn.command(&cmd, what).await?;
        }
        Err(e) => return Err(e.into()),
    }
    if !has_move {
        conn.command(
            &format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"),
            "UID STORE",
        )
        .await?;
        conn.command(&format!("UID EXPUNGE {set}"), "UID EXPUNGE")
            .await?;
    }
    Ok(())
}
