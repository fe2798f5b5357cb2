//! `clerk audit verify`: walks the whole chain by id and recomputes it,
//! reporting the FIRST event that breaks it — a gap in the ids (an event
//! deleted), a hash that does not match the row's content (a row edited), a
//! `prev_hash` that does not link to the previous event (rows replaced or
//! forged), or a run whose `seq` numbers are not contiguous.
//!
//! What it cannot see: events removed from the END of the chain (compare the
//! reported head hash with one noted elsewhere), or a whole chain rewritten by
//! someone who recomputes every hash.

use std::collections::HashMap;

use serde::Serialize;

use super::chain::{GENESIS_HASH, content_value, event_hash, with_item_key};
use crate::store::Store;

/// Events read per query.
const PAGE: i64 = 1000;

/// The result of [`verify`].
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct VerifyReport {
    /// How many events the chain holds.
    pub events: u64,
    /// The first event that breaks the chain, if any.
    pub first_bad: Option<BadEvent>,
    /// Id and hash of the last event (the head), to note for later comparison.
    pub last_id: Option<i64>,
    pub last_hash: Option<String>,
}

impl VerifyReport {
    /// True when the chain is intact.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
    }
}

/// An event that breaks the chain, and why.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct BadEvent {
    pub id: i64,
    /// A sentence naming the event, e.g. "event 17: hash does not match its
    /// content (edited?)".
    pub reason: String,
}

/// Recomputes the whole chain; reports the first bad event.
pub async fn verify(store: &Store) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport {
        events: 0,
        first_bad: None,
        last_id: None,
        last_hash: None,
    };
    let mut prev_id = 0i64;
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut run_seq: HashMap<String, i64> = HashMap::new();
    let mut after = i64::MIN;
    loop {
        let page = store.raw_events(after, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (id, row) in page {
            report.events += 1;
            report.last_id = Some(id);
            let bad = |reason: String| BadEvent {
                id,
                reason: format!("event {id}: {reason}"),
            };
            let row = match row {
                Ok(row) => row,
                Err(why) => {
                    report.first_bad.get_or_insert(bad(why));
                    report.last_hash = None;
                    continue;
                }
            };
            report.last_hash = Some(row.hash.clone());
            if report.first_bad.is_some() {
                continue;
            }
            let problem = if id != prev_id + 1 {
                Some(if id <= prev_id {
                    format!("id is not after the previous event {prev_id}")
                } else if id == prev_id + 2 {
                    format!("previous event {} is missing (deleted?)", prev_id + 1)
                } else {
                    format!(
                        "previous events {}..{} are missing (deleted?)",
                        prev_id + 1,
                        id - 1
                    )
                })
            } else {
                match serde_json::from_str::<serde_json::Value>(&row.detail) {
                    Err(e) => Some(format!("detail is not valid JSON ({e}) (edited?)")),
                    Ok(detail) => {
                        let content = content_value(
                            row.id,
                            row.run_id.as_deref(),
                            row.seq,
                            &row.at,
                            &row.actor,
                            &row.kind,
                            [
                                row.step.as_deref(),
                                row.step_name.as_deref(),
                                row.action.as_deref(),
                                row.target.as_deref(),
                            ],
                            &detail,
                            row.outcome.as_deref(),
                            row.duration_ms,
                            row.error.as_deref(),
                        );
                        let content = with_item_key(content, row.item_key.as_deref());
                        if event_hash(&row.prev_hash, &content) != row.hash {
                            Some("hash does not match its content (edited?)".to_string())
                        } else if row.prev_hash != prev_hash {
                            Some(if prev_id == 0 {
                                "prev_hash of the first event is not the genesis hash".to_string()
                            } else {
                                format!("prev_hash does not link to event {prev_id}")
                            })
                        } else {
                            check_seq(&mut run_seq, row.run_id.as_deref(), row.seq)
                        }
                    }
                }
            };
            if let Some(p) = problem {
                report.first_bad = Some(bad(p));
            }
            prev_id = id;
            prev_hash = row.hash;
        }
    }
    Ok(report)
}

/// Checks that `seq` continues its run (or is 0 without a run).
fn check_seq(run_seq: &mut HashMap<String, i64>, run: Option<&str>, seq: i64) -> Option<String> {
    match run {
        None if seq != 0 => Some(format!("seq is {seq} but events without a run have seq 0")),
        None => None,
        Some(run) => {
            let last = run_seq.entry(run.to_string()).or_insert(0);
            let expected = *last + 1;
            *last = seq;
            (seq != expected).then(|| {
                format!(
                    "seq {seq} of run {run} should be {expected} (an event of the run is missing?)"
                )
            })
        }
    }
}
