//! `clerk items`: the work-item ledger for people — which items of which job
//! are done, failed or in doubt — and `clerk items retry KEY…`, which puts
//! items a person has fixed back in the queue of their job (audited with the
//! OS user). See docs/work-items.md.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{UsageError, Workspace, code, os_user, output};
use crate::store::{ItemFilter, ItemRow, ItemState, Store};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ItemsArgs {
    #[command(subcommand)]
    pub command: Option<ItemsCommand>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Debug, Subcommand)]
pub enum ItemsCommand {
    /// Put business-exception and in-doubt items back to pending (after a
    /// person fixed them); the next resume of their job processes them.
    Retry(RetryArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only items last touched by this run (id or unique prefix).
    #[arg(long)]
    pub run: Option<String>,
    /// Only items of this lineage (the job: `bot:NAME@TIME` or `run:ID`).
    #[arg(long)]
    pub lineage: Option<String>,
    /// Only items in this state (pending, in_progress, done,
    /// business_exception, system_exception, in_doubt, skipped).
    #[arg(long)]
    pub state: Option<String>,
    /// Only items with this key (the loop's `checkpoint` value).
    #[arg(long)]
    pub key: Option<String>,
    /// At most this many items (the most recently changed).
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
    /// Print JSON (an array of items).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The item keys to requeue.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
    /// Only in this lineage (default: every lineage holding the key).
    #[arg(long)]
    pub lineage: Option<String>,
    /// Why (kept in the audit event).
    #[arg(long)]
    pub reason: Option<String>,
    /// Print JSON (the items requeued).
    #[arg(long)]
    pub json: bool,
}

pub async fn items(ws: &Workspace, args: ItemsArgs) -> anyhow::Result<u8> {
    let store = ws.store().await?;
    match args.command {
        Some(ItemsCommand::Retry(r)) => retry(&store, r).await,
        None => list(&store, args.list).await,
    }
}

/// Parses a state name, with the valid ones in the error.
pub fn parse_state(text: &str) -> Result<ItemState, UsageError> {
    ItemState::parse(text.trim()).ok_or_else(|| {
        let names: Vec<&str> = ItemState::ALL.iter().map(|s| s.as_str()).collect();
        let hint = crate::playbook::checks::suggest(text, names.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        UsageError(format!(
            "unknown item state `{text}`{hint}; states are {}",
            names.join(", ")
        ))
    })
}

async fn list(store: &Store, a: ListArgs) -> anyhow::Result<u8> {
    let state = a.state.as_deref().map(parse_state).transpose()?;
    let run = match &a.run {
        Some(r) => match store.get_run(r).await? {
            Some(run) => Some(run.id),
            None => return Err(UsageError(format!("no run `{r}` in this store")).into()),
        },
        None => None,
    };
    let mut rows = store
        .list_items(&ItemFilter {
            run,
            lineage: a.lineage,
            state,
            key: a.key,
            items_only: true,
            limit: None,
        })
        .await?;
    // Most recent last, at most `limit` of them.
    let limit = usize::try_from(a.limit.max(0)).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.drain(..rows.len() - limit);
    }
    if a.json {
        output::out_json(&Value::Array(rows.iter().map(item_json).collect()));
        return Ok(code::OK);
    }
    if rows.is_empty() {
        output::out("no work items match");
        return Ok(code::OK);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|i| {
            vec![
                i.item_key.clone(),
                i.state.as_str().to_string(),
                i.attempts.to_string(),
                i.step_id.clone(),
                i.lineage.clone(),
                i.run_id.clone(),
                i.updated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                note(i),
            ]
        })
        .collect();
    output::out(&output::table(
        &[
            "KEY",
            "STATE",
            "ATTEMPTS",
            "STEP",
            "LINEAGE",
            "LAST RUN",
            "UPDATED (UTC)",
            "ERROR / OUTPUT",
        ],
        &table,
    ));
    Ok(code::OK)
}

/// The error of an exception, else a short form of the output.
fn note(i: &ItemRow) -> String {
    let text = match (&i.error, &i.output) {
        (Some(e), _) => e.clone(),
        (None, Some(o)) if i.output_masked => format!("{o} (masked: it held a secret)"),
        (None, Some(o)) => o.to_string(),
        (None, None) => String::new(),
    };
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() > 80 {
        let cut: String = one_line.chars().take(77).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// An item as JSON: every ledger column, plus `key` (= `item_key`).
pub fn item_json(i: &ItemRow) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or_else(|_| json!({}));
    v["key"] = json!(i.item_key);
    v
}

async fn retry(store: &Store, a: RetryArgs) -> anyhow::Result<u8> {
    let actor = os_user();
    let requeued = store
        .requeue_items(&a.keys, a.lineage.as_deref(), &actor, a.reason.as_deref())
        .await?;
    // Keys that matched nothing requeueable: say why, per key.
    let mut missing = Vec::new();
    for key in &a.keys {
        if requeued.iter().any(|i| &i.item_key == key) {
            continue;
        }
        let found = store
            .list_items(&ItemFilter {
                key: Some(key.clone()),
                lineage: a.lineage.clone(),
                items_only: true,
                ..Default::default()
            })
            .await?;
        let why = if found.is_empty() {
            "no such item".to_string()
        } else {
            let states: Vec<String> = found
                .iter()
                .map(|i| format!("{} in {}", i.state, i.lineage))
                .collect();
            format!(
                "only business_exception and in_doubt items can be retried; it is {}",
                states.join(", ")
            )
        };
        missing.push((key.clone(), why));
    }
    if a.json {
        output::out_json(&json!({
            "requeued": requeued.iter().map(item_json).collect::<Vec<_>>(),
            "not_requeued": missing
                .iter()
                .map(|(k, why)| json!({ "key": k, "reason": why }))
                .collect::<Vec<_>>(),
        }));
    } else {
        let mut lines = Vec::new();
        let mut lineages: Vec<&str> = Vec::new();
        for i in &requeued {
            lines.push(format!(
                "requeued {} (step {}, lineage {})",
                i.item_key, i.step_id, i.lineage
            ));
            if !lineages.contains(&i.lineage.as_str()) {
                lineages.push(&i.lineage);
            }
        }
        for (k, why) in &missing {
            lines.push(format!("not requeued {k}: {why}"));
        }
        for l in lineages {
            if let Some(last) = store.runs_of_lineage(l).await?.pop() {
                lines.push(format!(
                    "to process them now: clerk runs resume {}",
                    last.id
                ));
            }
        }
        output::out(&lines.join("\n"));
    }
    Ok(if missing.is_empty() {
        code::OK
    } else {
        code::FAILED
    })
}
