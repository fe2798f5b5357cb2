//! Persisted bot state (the pause flag, in `bot_state`) and the scheduler
//! lease (`scheduler_lease`) that keeps a second `clerk serve` on the same
//! store from scheduling the same bots twice.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;

use super::NewEvent;
use super::time::{format_ts, now_micros, parse_ts};
use super::{Store, StoreError};

/// A bot's persisted state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BotState {
    pub paused: bool,
    #[serde(with = "super::time::serde_ts")]
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl Store {
    /// Pauses or resumes `bot` AND appends `event` (e.g. `admin.pause`) in one
    /// transaction. `updated_by` is the event's actor.
    pub async fn set_bot_paused(
        &self,
        bot: &str,
        paused: bool,
        event: NewEvent,
    ) -> Result<(), StoreError> {
        let q = self
            .sql(
                "INSERT INTO bot_state (bot, paused, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (bot) DO UPDATE SET paused = excluded.paused, \
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )
            .into_owned();
        let (q, event) = (&q, &event);
        self.write(|| async move {
            let mut tx = self.begin_write().await?;
            sqlx::query(q)
                .bind(bot)
                .bind(i64::from(paused))
                .bind(format_ts(&now_micros()))
                .bind(event.actor.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e, format_args!("write bot_state (bot {bot})")))?;
            self.append_in_tx(&mut tx, event.clone()).await?;
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit bot_state (bot {bot})")))
        })
        .await
    }

    /// Every bot that was ever paused or resumed, by name.
    pub async fn bot_states(&self) -> Result<HashMap<String, BotState>, StoreError> {
        let rows = sqlx::query("SELECT bot, paused, updated_at, updated_by FROM bot_state")
            .fetch_all(self.pool())
            .await
            .map_err(|e| self.err(e, "read bot_state"))?;
        let mut out = HashMap::new();
        for row in rows {
            let bot: String = row
                .try_get("bot")
                .map_err(|e| self.err(e, "read bot_state.bot"))?;
            let paused: i64 = row
                .try_get("paused")
                .map_err(|e| self.err(e, format_args!("read bot_state.paused of bot {bot}")))?;
            let at: String = row
                .try_get("updated_at")
                .map_err(|e| self.err(e, format_args!("read bot_state.updated_at of bot {bot}")))?;
            let updated_by: String = row
                .try_get("updated_by")
                .map_err(|e| self.err(e, format_args!("read bot_state.updated_by of bot {bot}")))?;
            let updated_at = parse_ts(&at).ok_or_else(|| {
                self.other(format_args!(
                    "bot_state.updated_at of bot {bot} is not a timestamp: '{at}'"
                ))
            })?;
            out.insert(
                bot,
                BotState {
                    paused: paused != 0,
                    updated_at,
                    updated_by,
                },
            );
        }
        Ok(out)
    }

    /// Acquires lease `name` for `holder` for `ttl`, or renews it if `holder`
    /// already has it or it has expired. False if someone else holds it.
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let ttl = chrono::Duration::from_std(ttl)
            .map_err(|e| self.other(format_args!("lease {name}: ttl out of range: {e}")))?;
        let update = self
            .sql(
                "UPDATE scheduler_lease SET \
                 acquired_at = CASE WHEN holder = $2 THEN acquired_at ELSE $3 END, \
                 holder = $2, expires_at = $4 \
                 WHERE name = $1 AND (holder = $2 OR expires_at <= $3)",
            )
            .into_owned();
        let insert = self
            .sql(
                "INSERT INTO scheduler_lease (name, holder, acquired_at, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            )
            .into_owned();
        let (update, insert) = (&update, &insert);
        self.write(|| async move {
            let now = now_micros();
            let (now_s, until) = (format_ts(&now), format_ts(&(now + ttl)));
            let mut tx = self.begin_write().await?;
            let mut got = false;
            for q in [update, insert] {
                let n = sqlx::query(q)
                    .bind(name)
                    .bind(holder)
                    .bind(now_s.as_str())
                    .bind(until.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e, format_args!("write scheduler_lease (lease {name})")))?
                    .rows_affected();
                if n > 0 {
                    got = true;
                    break;
                }
            }
            tx.commit()
                .await
                .map_err(|e| self.err(e, format_args!("commit scheduler_lease (lease {name})")))?;
            Ok(got)
        })
        .await
    }

    /// Gives up lease `name` if `holder` holds it (otherwise does nothing).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let q = self.sql("DELETE FROM scheduler_lease WHERE name = $1 AND holder = $2");
        let q = q.as_ref();
        self.write(|| async move {
            sqlx::query(q)
                .bind(name)
                .bind(holder)
                .execute(self.pool())
                .await
                .map_err(|e| {
                    self.err(
                        e,
                        format_args!("delete from scheduler_lease (lease {name})"),
                    )
                })?;
            Ok(())
        })
        .await
    }
}
